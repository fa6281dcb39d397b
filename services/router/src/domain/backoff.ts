import type { RetryPolicy } from "./routes.js";

/**
 * The delay before retry number `attempt` (1 = the delay after the first failed try): "full jitter", a uniform
 * draw in [0, min(maxDelayMs, baseDelayMs · 2^(attempt-1))], so replicas retrying the same failure spread out
 * instead of stampeding together. `retryAfterMs` (a provider's Retry-After) is a floor: the result is never below
 * it, even when it exceeds `maxDelayMs` (callers decide whether such a wait is worth it).
 *
 * `random` must return a number in [0, 1); it is injectable so tests can pin the draw.
 */
export function backoffDelay(
  attempt: number,
  policy: Pick<RetryPolicy, "baseDelayMs" | "maxDelayMs">,
  retryAfterMs?: number,
  random: () => number = Math.random,
): number {
  const exponent = Math.max(0, attempt - 1);
  // Cap the exponent so 2^n never overflows into Infinity for absurd attempt counts.
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.min(exponent, 30));
  const jittered = Math.floor(random() * ceiling);
  return Math.max(jittered, retryAfterMs ?? 0);
}
