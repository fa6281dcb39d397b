import { AppError, isAppError } from "./errors.js";

/**
 * The AppError an aborted signal stands for: its reason when that is an AppError already (the gRPC server aborts
 * with CANCELLED, a deadline with DEADLINE_EXCEEDED), DEADLINE_EXCEEDED for `AbortSignal.timeout`, otherwise
 * CANCELLED. Never retryable: the caller is gone.
 */
export function abortedError(signal: AbortSignal): AppError {
  const reason: unknown = signal.reason;
  if (isAppError(reason)) return reason;
  if (reason instanceof Error && reason.name === "TimeoutError") {
    return new AppError("DEADLINE_EXCEEDED", "Request deadline exceeded", { retryable: false, cause: reason });
  }
  return new AppError("CANCELLED", "Request cancelled", { retryable: false, cause: reason });
}

/** Throws `abortedError(signal)` when the signal has aborted. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortedError(signal);
}

/** Waits `ms`; with a signal, rejects with `abortedError(signal)` as soon as it aborts (the timer is cleared). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortedError(signal));
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortedError(signal!));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Runs `fn` once `lingerMs` have passed, or, with 0, at the end of this turn of the event loop (`setImmediate`): how
 * batchers (the event outbox, the ledger) let work that arrives close together share one write.
 */
export function afterLinger(lingerMs: number, fn: () => void): void {
  if (lingerMs > 0) setTimeout(fn, lingerMs);
  else setImmediate(fn);
}

/** Settles like `promise`, or rejects with `abortedError(signal)` first if the signal aborts. */
export function raceAbort<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) return Promise.reject(abortedError(signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortedError(signal));
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}
