import { AppError, sleep as abortableSleep, abortedError, PEER_UNREACHABLE, toAppError } from "@tokenmesh/runtime";
import { backoffDelay } from "./backoff.js";
import type { RetryPolicy } from "./routes.js";

/**
 * The port a streaming call goes through: runs `request` on the catalog model `modelId` and yields its chunks.
 * It must stop (and cancel the underlying call) when `signal` aborts or when the consumer stops iterating, and
 * fail with an AppError whose `retryable` says whether trying again may help.
 */
export type Generator<Req, Chunk> = (modelId: string, request: Req, signal: AbortSignal) => AsyncIterable<Chunk>;

/**
 * Per-model circuit breaker state, shared by all router replicas. Implementations must never throw: when their
 * store is unreachable they let calls through (a breaker outage must not become a router outage).
 */
export interface CircuitBreaker {
  /** Whether a call to `modelId` may go ahead now (closed, or this caller is the half-open probe). */
  allow(modelId: string): Promise<boolean>;
  /** The model answered: closes its breaker and clears the failure count. */
  recordSuccess(modelId: string): Promise<void>;
  /** The model failed retryably: counts toward opening, and reopens a half-open breaker. */
  recordFailure(modelId: string): Promise<void>;
}

/** How one attempt ended, as recorded in metrics. */
export type AttemptOutcome = "ok" | "retryable_error" | "error" | "cancelled" | "circuit_open";

/** Hooks for metrics and logs; called synchronously, must not throw. */
export interface FallbackObserver {
  attempt?(event: { model: string; attempt: number; outcome: AttemptOutcome; error?: AppError }): void;
  retry?(event: { model: string; attempt: number; delayMs: number; error: AppError }): void;
  fallback?(event: { from: string; to: string; error: AppError }): void;
}

export interface FallbackOptions {
  /** Catalog ids in the order they are tried (see resolveModel). */
  candidates: readonly string[];
  policy: RetryPolicy;
  /** The caller's signal: once aborted, nothing more is tried and its reason is thrown. */
  signal: AbortSignal;
  /** The caller's deadline (epoch ms): no backoff wait is started that would end past it. */
  deadline?: number | undefined;
  breaker?: CircuitBreaker | undefined;
  observer?: FallbackObserver | undefined;
  /** Injectable for tests. */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  random?: () => number;
  now?: () => number;
}

/** What a successful run produced, and where. */
export interface Committed<R> {
  /** The catalog id of the model that served. */
  model: string;
  /** Attempts made across all candidates, the successful one included. */
  attempts: number;
  value: R;
}

/** Codes that say the model itself is saturated or down: better served by the next fallback than by waiting. */
const MOVE_ON_CODES = new Set(["RESOURCE_EXHAUSTED", "UNAVAILABLE"]);

function circuitOpenError(model: string): AppError {
  return new AppError("UNAVAILABLE", `The model "${model}" is temporarily unavailable (circuit open)`, {
    reason: "circuit_open",
    retryable: true,
  });
}

/**
 * Runs `attempt` on each candidate in turn until one succeeds, with retries and fallbacks:
 *
 * - A non-retryable AppError (by its `retryable` flag, never its message) fails the run at once.
 * - A retryable one is retried on the same model after {@link backoffDelay} (full jitter, `retryAfterMs` as a
 *   floor), up to `policy.maxAttempts` tries per model; then the next candidate is tried.
 * - RESOURCE_EXHAUSTED and UNAVAILABLE skip straight to the next candidate when there is one; the last candidate
 *   is retried in place instead, so a lone model still gets its retries.
 * - A retry whose wait would exceed `policy.maxDelayMs` (a long Retry-After) or end past the deadline is not
 *   waited for: the next candidate is tried, or the error is thrown.
 * - A model whose breaker is open is skipped to the next candidate.
 * - Once `signal` aborts, nothing more is tried: the abort reason is thrown (CANCELLED/DEADLINE_EXCEEDED).
 *
 * When every candidate fails, the last model error is thrown (UNAVAILABLE "circuit_open" if every breaker was
 * open). Non-AppErrors are treated as INTERNAL, non-retryable.
 */
export async function runWithFallback<R>(
  options: FallbackOptions,
  attempt: (modelId: string, signal: AbortSignal) => Promise<R>,
): Promise<Committed<R>> {
  const { candidates, policy, signal, breaker, observer } = options;
  const sleep = options.sleep ?? abortableSleep;
  const now = options.now ?? Date.now;
  let attempts = 0;
  let lastError: AppError | undefined;
  let previous: { model: string; error: AppError } | undefined;

  for (let i = 0; i < candidates.length; i++) {
    const model = candidates[i] as string;
    const isLast = i === candidates.length - 1;
    for (let n = 1; n <= policy.maxAttempts; n++) {
      if (signal.aborted) throw abortedError(signal);
      if (breaker && !(await breaker.allow(model))) {
        const error = circuitOpenError(model);
        observer?.attempt?.({ model, attempt: n, outcome: "circuit_open", error });
        lastError ??= error;
        previous = { model, error };
        break;
      }
      if (previous !== undefined && previous.model !== model) {
        observer?.fallback?.({ from: previous.model, to: model, error: previous.error });
        previous = undefined;
      }
      attempts++;
      let error: AppError;
      try {
        const value = await attempt(model, signal);
        observer?.attempt?.({ model, attempt: n, outcome: "ok" });
        await breaker?.recordSuccess(model);
        return { model, attempts, value };
      } catch (raw) {
        if (signal.aborted) {
          observer?.attempt?.({ model, attempt: n, outcome: "cancelled" });
          throw abortedError(signal);
        }
        error = toAppError(raw);
      }
      if (!error.retryable) {
        observer?.attempt?.({ model, attempt: n, outcome: "error", error });
        // The model answered (e.g. rejected the request): it is up, as far as the breaker is concerned.
        await breaker?.recordSuccess(model);
        throw error;
      }
      observer?.attempt?.({ model, attempt: n, outcome: "retryable_error", error });
      // Our own peer being unreachable (inference restarting) says nothing about the model: retry, don't blame it.
      if (error.reason !== PEER_UNREACHABLE) await breaker?.recordFailure(model);
      lastError = error;
      previous = { model, error };
      if ((!isLast && MOVE_ON_CODES.has(error.code)) || n >= policy.maxAttempts) break;
      const delayMs = backoffDelay(n, policy, error.retryAfterMs, options.random);
      if (delayMs > policy.maxDelayMs) break;
      if (options.deadline !== undefined && now() + delayMs >= options.deadline) {
        if (isLast) throw error;
        break;
      }
      observer?.retry?.({ model, attempt: n, delayMs, error });
      await sleep(delayMs, signal);
    }
  }
  throw lastError ?? new AppError("NOT_FOUND", "No model to try", { reason: "model_not_found", param: "model" });
}

/** What {@link streamWithFallback} yields: the route taken, once, right before the first chunk; then chunks. */
export type RoutedEvent<Chunk> = { type: "route"; model: string; attempts: number } | { type: "chunk"; chunk: Chunk };

/**
 * Streams `request` through {@link runWithFallback}: an attempt succeeds once its first chunk arrives (or it ends
 * cleanly without any). From then on the stream is committed: a later error propagates as is, and is NEVER
 * retried or sent to a fallback, since the caller already has part of an answer. Stopping iteration early
 * cancels the underlying call.
 *
 * Yields one `route` event first (also for an empty stream), then every chunk in order.
 */
export async function* streamWithFallback<Req, Chunk>(
  generate: Generator<Req, Chunk>,
  request: Req,
  options: FallbackOptions,
): AsyncGenerator<RoutedEvent<Chunk>> {
  const committed = await runWithFallback(options, async (model, signal) => {
    const iterator = generate(model, request, signal)[Symbol.asyncIterator]();
    const first = await iterator.next();
    return { iterator, first };
  });
  const { iterator, first } = committed.value;
  let done = first.done === true;
  try {
    yield { type: "route", model: committed.model, attempts: committed.attempts };
    if (done) return;
    yield { type: "chunk", chunk: first.value as Chunk };
    for (;;) {
      const next = await iterator.next();
      if (next.done) {
        done = true;
        return;
      }
      yield { type: "chunk", chunk: next.value };
    }
  } finally {
    if (!done) await iterator.return?.();
  }
}
