import { describe, expect, it } from "vitest";
import { abortedError, afterLinger, raceAbort, sleep } from "./abort.js";
import { AppError } from "./errors.js";

describe("abortedError", () => {
  it("keeps an AppError reason, maps a timeout to DEADLINE_EXCEEDED and anything else to CANCELLED", () => {
    const ac = new AbortController();
    ac.abort(new AppError("UNAVAILABLE", "draining"));
    expect(abortedError(ac.signal).code).toBe("UNAVAILABLE");
    const t = new AbortController();
    t.abort(new DOMException("late", "TimeoutError"));
    expect(abortedError(t.signal).code).toBe("DEADLINE_EXCEEDED");
    const c = new AbortController();
    c.abort();
    expect(abortedError(c.signal)).toMatchObject({ code: "CANCELLED", retryable: false });
  });
});

describe("sleep", () => {
  it("resolves without a signal and rejects at once on an abort", async () => {
    await expect(sleep(1)).resolves.toBeUndefined();
    const ac = new AbortController();
    const p = sleep(60_000, ac.signal);
    ac.abort();
    await expect(p).rejects.toMatchObject({ code: "CANCELLED" });
  });
});

describe("raceAbort", () => {
  it("passes the promise's outcome through, or the abort first", async () => {
    await expect(raceAbort(Promise.resolve(3), new AbortController().signal)).resolves.toBe(3);
    const ac = new AbortController();
    const p = raceAbort(new Promise(() => undefined), ac.signal);
    ac.abort();
    await expect(p).rejects.toMatchObject({ code: "CANCELLED" });
  });
});

describe("afterLinger", () => {
  it("with 0 runs at the end of this turn: after promise jobs, in order with other setImmediate callbacks", async () => {
    const order: string[] = [];
    await new Promise<void>((resolve) => {
      setImmediate(() => order.push("immediate before"));
      afterLinger(0, () => order.push("linger 0"));
      setImmediate(() => {
        order.push("immediate after");
        resolve();
      });
      void Promise.resolve().then(() => order.push("promise"));
    });
    expect(order).toEqual(["promise", "immediate before", "linger 0", "immediate after"]);
  });

  it("otherwise runs once the linger has passed, after a shorter timer set at the same time", async () => {
    const order: string[] = [];
    const started = performance.now();
    const ranAfter = await new Promise<number>((resolve) => {
      setTimeout(() => order.push("timer 10"), 10);
      afterLinger(30, () => {
        order.push("linger 30");
        resolve(performance.now() - started);
      });
    });
    expect(order).toEqual(["timer 10", "linger 30"]);
    expect(ranAfter).toBeGreaterThanOrEqual(29);
  });
});
