import { describe, expect, it } from "vitest";
import { type HedgeAttempt, hedged, hedgePlan, type Timer } from "./hedge.js";

/** A clock whose timers fire only when the test advances it. */
class ManualClock {
  now = 0;
  private tasks: { at: number; fn: () => void; live: boolean }[] = [];
  readonly timer: Timer = (ms, fn) => {
    const task = { at: this.now + ms, fn, live: true };
    this.tasks.push(task);
    return () => {
      task.live = false;
    };
  };
  advance(ms: number): void {
    this.now += ms;
    for (;;) {
      const due = this.tasks.filter((t) => t.live && t.at <= this.now).sort((a, b) => a.at - b.at)[0];
      if (due === undefined) return;
      due.live = false;
      due.fn();
    }
  }
}

/** An attempt the test drives: chunks pushed by hand; cancel() fails a pending read. */
class Scripted implements HedgeAttempt<string> {
  cancelled = false;
  private queue: IteratorResult<string>[] = [];
  private waiting: { resolve: (r: IteratorResult<string>) => void; reject: (e: unknown) => void } | undefined;
  private error: unknown;
  constructor(readonly model: string) {}
  push(chunk: string): void {
    this.deliver({ value: chunk, done: false });
  }
  end(): void {
    this.deliver({ value: undefined, done: true });
  }
  fail(error: unknown): void {
    this.error = error;
    const w = this.waiting;
    this.waiting = undefined;
    w?.reject(error);
  }
  cancel(): void {
    this.cancelled = true;
    this.fail(new Error("cancelled"));
  }
  private deliver(r: IteratorResult<string>): void {
    const w = this.waiting;
    this.waiting = undefined;
    if (w) w.resolve(r);
    else this.queue.push(r);
  }
  chunks: AsyncIterable<string> = {
    [Symbol.asyncIterator]: () => ({
      next: () => {
        const queued = this.queue.shift();
        if (queued) return Promise.resolve(queued);
        if (this.error !== undefined) return Promise.reject(this.error);
        return new Promise((resolve, reject) => (this.waiting = { resolve, reject }));
      },
      return: async () => ({ value: undefined, done: true }),
    }),
  };
}

const tick = () => new Promise((r) => setImmediate(r));

function setup(given?: { afterMs: number; to: string; max: number } | null) {
  const plan = given === null ? undefined : (given ?? { afterMs: 100, to: "b", max: 1 });
  const clock = new ManualClock();
  const started: Scripted[] = [];
  const winners: string[] = [];
  const stream = hedged<string>({
    primary: "a",
    plan,
    timer: clock.timer,
    start: (model) => {
      const s = new Scripted(model);
      started.push(s);
      return s;
    },
    onWinner: (model, index) => winners.push(`${model}#${index}`),
  });
  const out: string[] = [];
  const done = (async () => {
    for await (const c of stream) out.push(c);
  })();
  return { clock, started, winners, out, done };
}

describe("hedged", () => {
  it("does not hedge when the first token comes before the wait", async () => {
    const { clock, started, winners, out, done } = setup();
    await tick();
    clock.advance(99);
    started[0]!.push("x");
    started[0]!.end();
    await done;
    clock.advance(1_000);
    expect(started).toHaveLength(1);
    expect(out).toEqual(["x"]);
    expect(winners).toEqual(["a#0"]);
  });

  it("starts the hedge on `to` after the wait, and the first to produce a token wins; the other is cancelled", async () => {
    const { clock, started, winners, out, done } = setup();
    await tick();
    clock.advance(100);
    expect(started.map((s) => s.model)).toEqual(["a", "b"]);
    started[1]!.push("fast");
    await tick();
    expect(started[0]!.cancelled).toBe(true);
    started[1]!.push("er");
    started[1]!.end();
    await done;
    expect(out).toEqual(["fast", "er"]);
    expect(winners).toEqual(["b#1"]);
    expect(started[1]!.cancelled).toBe(false);
  });

  it("lets the primary win when it answers after the hedge started", async () => {
    const { clock, started, winners, out, done } = setup();
    await tick();
    clock.advance(150);
    started[0]!.push("slow-but-first");
    started[0]!.end();
    await done;
    expect(winners).toEqual(["a#0"]);
    expect(out).toEqual(["slow-but-first"]);
    expect(started[1]!.cancelled).toBe(true);
  });

  it("starts at most `max` hedges, each after another wait", async () => {
    const { clock, started, done } = setup({ afterMs: 50, to: "a", max: 2 });
    await tick();
    clock.advance(50);
    clock.advance(50);
    clock.advance(500);
    expect(started.map((s) => s.model)).toEqual(["a", "a", "a"]);
    started[2]!.push("z");
    started[2]!.end();
    await done;
    expect(started[0]!.cancelled && started[1]!.cancelled).toBe(true);
  });

  it("throws the primary's error at once when it fails before the wait, without hedging", async () => {
    const { clock, started, done } = setup();
    await tick();
    started[0]!.fail(new Error("boom"));
    await expect(done).rejects.toThrow("boom");
    clock.advance(1_000);
    expect(started).toHaveLength(1);
  });

  it("keeps waiting for the hedge when the primary fails after it started", async () => {
    const { clock, started, out, winners, done } = setup();
    await tick();
    clock.advance(100);
    started[0]!.fail(new Error("primary died"));
    await tick();
    started[1]!.push("saved");
    started[1]!.end();
    await done;
    expect(out).toEqual(["saved"]);
    expect(winners).toEqual(["b#1"]);
  });

  it("throws when every attempt failed", async () => {
    const { clock, started, done } = setup();
    await tick();
    clock.advance(100);
    started[1]!.fail(new Error("hedge died"));
    started[0]!.fail(new Error("primary died"));
    await expect(done).rejects.toThrow("primary died");
  });

  it("never hedges without a plan", async () => {
    const { clock, started, done } = setup(null);
    await tick();
    clock.advance(10_000);
    expect(started).toHaveLength(1);
    started[0]!.end();
    await done;
  });
});

describe("hedgePlan", () => {
  const none = () => undefined;
  it("uses after_ms, the percentile when known, and after_ms while samples are too few", () => {
    expect(hedgePlan("m", undefined, none)).toBeUndefined();
    expect(hedgePlan("m", { after_ms: 250, max: 1 }, none)).toEqual({ afterMs: 250, to: "m", max: 1 });
    expect(hedgePlan("m", { after_percentile: 95, max: 1 }, none)).toBeUndefined();
    expect(hedgePlan("m", { after_percentile: 95, after_ms: 400, to: "n", max: 1 }, none)).toEqual({
      afterMs: 400,
      to: "n",
      max: 1,
    });
    const p95 = (id: string, p: number) => (id === "m" && p === 95 ? 123.4 : undefined);
    expect(hedgePlan("m", { after_percentile: 95, after_ms: 400, max: 1 }, p95)).toEqual({
      afterMs: 123,
      to: "m",
      max: 1,
    });
  });
});
