import { setTimeout as sleep } from "node:timers/promises";

/** Options for {@link waitFor}. */
export interface WaitForOptions {
  /** Give up after this long (default 10 000 ms). */
  timeoutMs?: number;
  /** Pause between attempts (default 50 ms). */
  intervalMs?: number;
  /** What is being waited for, for the timeout error (default "condition"). */
  description?: string;
}

/** Raised by {@link waitFor} when the condition did not hold in time; `cause` is the last error thrown, if any. */
export class WaitForTimeoutError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "WaitForTimeoutError";
  }
}

/**
 * Polls `fn` until it returns a value other than `undefined`, `null` or `false`, and resolves with that value.
 *
 * A throw (or rejection) from `fn` counts as "not yet": polling goes on, and the last error becomes the `cause`
 * of the {@link WaitForTimeoutError} raised after `timeoutMs`. `fn` is always tried at least once, and never
 * runs concurrently with itself.
 */
export async function waitFor<T>(
  fn: () => T | Promise<T>,
  options: WaitForOptions = {},
): Promise<Exclude<T, undefined | null | false>> {
  const { timeoutMs = 10_000, intervalMs = 50, description = "condition" } = options;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await fn();
      if (value !== undefined && value !== null && value !== false)
        return value as Exclude<T, undefined | null | false>;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const reason = lastError instanceof Error ? `: ${lastError.message}` : "";
      throw new WaitForTimeoutError(
        `Timed out after ${timeoutMs} ms waiting for ${description}${reason}`,
        lastError === undefined ? undefined : { cause: lastError },
      );
    }
    await sleep(Math.min(intervalMs, Math.max(0, deadline - Date.now())));
  }
}
