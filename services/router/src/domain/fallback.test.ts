import { AppError, ResourceExhaustedError, UpstreamUnavailableError } from "@tokenmesh/runtime";
import { describe, expect, it } from "vitest";
import {
  type CircuitBreaker,
  type FallbackOptions,
  type Generator,
  type RoutedEvent,
  runWithFallback,
  streamWithFallback,
} from "./fallback.js";

/** One scripted call: fail before any chunk, or stream chunks (then optionally fail). */
type Step = { fail: AppError } | { chunks: string[]; thenFail?: AppError };

/** A Generator that plays each model's steps in order, recording every call. */
function scripted(script: Record<string, Step[]>) {
  const calls: string[] = [];
  const cancelled: string[] = [];
  const generate: Generator<string, string> = (model, _req, signal) => {
    calls.push(model);
    const step = script[model]?.shift();
    return (async function* () {
      let finished = false;
      try {
        if (step === undefined) throw new Error(`no script left for ${model}`);
        if ("fail" in step) throw step.fail;
        for (const c of step.chunks) {
          if (signal.aborted) throw signal.reason;
          yield c;
        }
        if (step.thenFail) throw step.thenFail;
        finished = true;
      } finally {
        if (!finished) cancelled.push(model);
      }
    })();
  };
  return { generate, calls, cancelled };
}

function options(candidates: string[], extra: Partial<FallbackOptions> = {}) {
  const sleeps: number[] = [];
  const opts: FallbackOptions = {
    candidates,
    policy: { maxAttempts: 3, baseDelayMs: 100, maxDelayMs: 2000 },
    signal: new AbortController().signal,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    random: () => 0.5,
    ...extra,
  };
  return { opts, sleeps };
}

async function collect<T>(events: AsyncIterable<RoutedEvent<T>>): Promise<RoutedEvent<T>[]> {
  const out: RoutedEvent<T>[] = [];
  for await (const e of events) out.push(e);
  return out;
}

const unavailable = () => new UpstreamUnavailableError("upstream 503");
const timeout = () => new AppError("DEADLINE_EXCEEDED", "upstream timed out", { origin: "upstream" });

describe("streamWithFallback", () => {
  it("retries a retryable error with backoff, then streams with the route first", async () => {
    const { generate, calls } = scripted({
      a: [{ fail: unavailable() }, { fail: unavailable() }, { chunks: ["x", "y"] }],
    });
    const { opts, sleeps } = options(["a"]);
    const events = await collect(streamWithFallback(generate, "req", opts));
    expect(events).toEqual([
      { type: "route", model: "a", attempts: 3 },
      { type: "chunk", chunk: "x" },
      { type: "chunk", chunk: "y" },
    ]);
    expect(calls).toEqual(["a", "a", "a"]);
    // Full jitter with random() = 0.5: half of 100, then half of 200.
    expect(sleeps).toEqual([50, 100]);
  });

  it("falls back in chain order when the primary is unavailable, without waiting", async () => {
    const { generate, calls } = scripted({
      a: [{ fail: unavailable() }],
      b: [{ fail: new ResourceExhaustedError("queue full") }],
      c: [{ chunks: ["z"] }],
    });
    const fallbacks: string[] = [];
    const { opts, sleeps } = options(["a", "b", "c"], {
      observer: { fallback: (e) => fallbacks.push(`${e.from}->${e.to}`) },
    });
    const events = await collect(streamWithFallback(generate, "req", opts));
    expect(events[0]).toEqual({ type: "route", model: "c", attempts: 3 });
    expect(calls).toEqual(["a", "b", "c"]);
    expect(fallbacks).toEqual(["a->b", "b->c"]);
    expect(sleeps).toEqual([]);
  });

  it("retries other retryable errors in place up to max_attempts before falling back", async () => {
    const { generate, calls } = scripted({
      a: [{ fail: timeout() }, { fail: timeout() }, { fail: timeout() }],
      b: [{ chunks: ["ok"] }],
    });
    const retries: number[] = [];
    const { opts } = options(["a", "b"], { observer: { retry: (e) => retries.push(e.attempt) } });
    const events = await collect(streamWithFallback(generate, "req", opts));
    expect(calls).toEqual(["a", "a", "a", "b"]);
    expect(retries).toEqual([1, 2]);
    expect(events[0]).toEqual({ type: "route", model: "b", attempts: 4 });
  });

  it("throws the last error when every candidate is used up", async () => {
    const { generate, calls } = scripted({
      a: [{ fail: unavailable() }],
      b: [0, 1, 2].map(() => ({ fail: unavailable() })),
    });
    const { opts } = options(["a", "b"]);
    await expect(collect(streamWithFallback(generate, "req", opts))).rejects.toMatchObject({ code: "UNAVAILABLE" });
    expect(calls).toEqual(["a", "b", "b", "b"]);
  });

  it("never retries or falls back once a chunk has been forwarded", async () => {
    const broke = new UpstreamUnavailableError("connection reset mid-stream");
    const { generate, calls } = scripted({ a: [{ chunks: ["x"], thenFail: broke }], b: [{ chunks: ["never"] }] });
    const { opts } = options(["a", "b"]);
    const seen: RoutedEvent<string>[] = [];
    const err = await (async () => {
      try {
        for await (const e of streamWithFallback(generate, "req", opts)) seen.push(e);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBe(broke);
    expect(seen).toEqual([
      { type: "route", model: "a", attempts: 1 },
      { type: "chunk", chunk: "x" },
    ]);
    expect(calls).toEqual(["a"]);
  });

  it("fails fast on a non-retryable error", async () => {
    const bad = new AppError("INVALID_ARGUMENT", "bad request", { origin: "upstream", param: "messages" });
    const denied = new AppError("PERMISSION_DENIED", "no", { origin: "upstream" });
    for (const error of [bad, denied]) {
      const { generate, calls } = scripted({ a: [{ fail: error }], b: [{ chunks: ["never"] }] });
      const { opts, sleeps } = options(["a", "b"]);
      await expect(collect(streamWithFallback(generate, "req", opts))).rejects.toBe(error);
      expect(calls).toEqual(["a"]);
      expect(sleeps).toEqual([]);
    }
  });

  it("treats unknown errors as non-retryable INTERNAL", async () => {
    const { generate, calls } = scripted({ a: [{ fail: new TypeError("boom") as unknown as AppError }] });
    const { opts } = options(["a", "b"]);
    await expect(collect(streamWithFallback(generate, "req", opts))).rejects.toMatchObject({ code: "INTERNAL" });
    expect(calls).toEqual(["a"]);
  });

  it("honours retryAfterMs as a floor on the backoff", async () => {
    const limited = new ResourceExhaustedError("rate limited", { origin: "upstream", retryAfterMs: 700 });
    const { generate } = scripted({ a: [{ fail: limited }, { chunks: ["x"] }] });
    const { opts, sleeps } = options(["a"]);
    await collect(streamWithFallback(generate, "req", opts));
    expect(sleeps).toEqual([700]);
  });

  it("does not wait for a Retry-After beyond max_delay_ms: the next candidate is tried", async () => {
    const limited = new ResourceExhaustedError("rate limited", { origin: "upstream", retryAfterMs: 60_000 });
    const { generate, calls } = scripted({ a: [{ fail: limited }] });
    const { opts, sleeps } = options(["a"]);
    await expect(collect(streamWithFallback(generate, "req", opts))).rejects.toBe(limited);
    expect(calls).toEqual(["a"]);
    expect(sleeps).toEqual([]);
  });

  it("does not start a backoff that would end past the deadline", async () => {
    const { generate, calls } = scripted({ a: [{ fail: unavailable() }, { chunks: ["x"] }] });
    const { opts, sleeps } = options(["a"], { deadline: 1_000 + 10, now: () => 1_000 });
    await expect(collect(streamWithFallback(generate, "req", opts))).rejects.toMatchObject({ code: "UNAVAILABLE" });
    expect(calls).toEqual(["a"]);
    expect(sleeps).toEqual([]);
  });

  it("stops everything when the caller cancels during a backoff", async () => {
    const ac = new AbortController();
    const { generate, calls } = scripted({ a: [{ fail: unavailable() }, { chunks: ["x"] }] });
    const { opts } = options(["a"], {
      signal: ac.signal,
      sleep: async () => {
        ac.abort(new AppError("CANCELLED", "cancelled by the client"));
      },
    });
    await expect(collect(streamWithFallback(generate, "req", opts))).rejects.toMatchObject({ code: "CANCELLED" });
    expect(calls).toEqual(["a"]);
  });

  it("cancels the underlying call when the consumer stops early", async () => {
    const { generate, cancelled } = scripted({ a: [{ chunks: ["x", "y", "z"] }] });
    const { opts } = options(["a"]);
    for await (const e of streamWithFallback(generate, "req", opts)) {
      if (e.type === "chunk") break;
    }
    expect(cancelled).toEqual(["a"]);
  });

  it("yields the route for an empty stream", async () => {
    const { generate } = scripted({ a: [{ chunks: [] }] });
    const { opts } = options(["a"]);
    expect(await collect(streamWithFallback(generate, "req", opts))).toEqual([
      { type: "route", model: "a", attempts: 1 },
    ]);
  });
});

describe("runWithFallback with a circuit breaker", () => {
  function memoryBreaker(open: Set<string>): CircuitBreaker & { failures: string[]; successes: string[] } {
    const failures: string[] = [];
    const successes: string[] = [];
    return {
      failures,
      successes,
      allow: async (m) => !open.has(m),
      recordSuccess: async (m) => {
        successes.push(m);
      },
      recordFailure: async (m) => {
        failures.push(m);
      },
    };
  }

  it("skips a model whose breaker is open to its fallback", async () => {
    const breaker = memoryBreaker(new Set(["a"]));
    const tried: string[] = [];
    const result = await runWithFallback(options(["a", "b"], { breaker }).opts, async (m) => {
      tried.push(m);
      return m;
    });
    expect(result).toEqual({ model: "b", attempts: 1, value: "b" });
    expect(tried).toEqual(["b"]);
    expect(breaker.successes).toEqual(["b"]);
  });

  it("answers UNAVAILABLE circuit_open when every breaker is open", async () => {
    const breaker = memoryBreaker(new Set(["a", "b"]));
    await expect(runWithFallback(options(["a", "b"], { breaker }).opts, async () => "x")).rejects.toMatchObject({
      code: "UNAVAILABLE",
      reason: "circuit_open",
    });
  });

  it("records retryable failures, and not non-retryable ones, as breaker failures", async () => {
    const breaker = memoryBreaker(new Set());
    let n = 0;
    await expect(
      runWithFallback(options(["a"], { breaker }).opts, async () => {
        n++;
        throw n === 1 ? unavailable() : new AppError("INVALID_ARGUMENT", "bad");
      }),
    ).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    expect(breaker.failures).toEqual(["a"]);
    expect(breaker.successes).toEqual(["a"]);
  });

  it("does not blame a model for our own peer being unreachable (inference restarting)", async () => {
    const breaker = memoryBreaker(new Set());
    let n = 0;
    const result = await runWithFallback(options(["a"], { breaker }).opts, async () => {
      if (n++ === 0) throw new AppError("UNAVAILABLE", "connect ECONNREFUSED", { reason: "peer_unreachable" });
      return "ok";
    });
    expect(result.value).toBe("ok");
    expect(breaker.failures).toEqual([]);
  });
});
