import type { Logger } from "@tokenmesh/telemetry";
import type { Redis } from "ioredis";
import type { CircuitBreaker } from "../domain/fallback.js";
import type { BreakerPolicy } from "../domain/routes.js";
import { BREAKER_GAUGE, routerMetrics } from "../metrics.js";

type BreakerState = keyof typeof BREAKER_GAUGE;

// One hash per model: state (closed | open | half_open), failures (consecutive), until (epoch ms: end of the
// cooldown while open, end of the probe's lease while half-open). Scripts keep each transition atomic across
// replicas; `now` comes from the caller so tests and replicas agree on one clock source per call.

// KEYS[1] hash; ARGV now, lease_ms → {allowed, state}
const ALLOW = `
local s = redis.call('HMGET', KEYS[1], 'state', 'until')
local state = s[1]
if not state or state == 'closed' then return {1, 'closed'} end
local now = tonumber(ARGV[1])
if now < (tonumber(s[2]) or 0) then return {0, state} end
redis.call('HSET', KEYS[1], 'state', 'half_open', 'until', now + tonumber(ARGV[2]))
return {1, 'half_open'}
`;

// KEYS[1] hash; ARGV now, threshold, cooldown_ms, ttl_ms → state
const FAILURE = `
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
if state == 'half_open' or (state == 'closed' and failures >= tonumber(ARGV[2])) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'until', tonumber(ARGV[1]) + tonumber(ARGV[3]))
  state = 'open'
elseif state == 'closed' then
  redis.call('HSET', KEYS[1], 'state', 'closed')
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return state
`;

/** How long a replica trusts a closed breaker it saw without asking Redis again. */
const LOCAL_TRUST_MS = 250;
/** A call this close to the end of that trust re-reads the state in the background, so no call waits for Redis. */
const REFRESH_AHEAD_MS = 100;
/**
 * A model called within this long keeps its trust renewed in the background between calls, so traffic sparser than
 * one call per `LOCAL_TRUST_MS` does not wait for Redis either: one read per warm model and replica every 150 ms
 * (what steady traffic already costs), sent together. A model called less often than this asks before its call.
 */
const KEEP_WARM_MS = 10_000;

/**
 * A circuit breaker per model with its state in Redis, so every router replica skips the same failing model.
 * Closed → open after `failureThreshold` consecutive retryable failures; open → half-open after `cooldownMs`,
 * when exactly one caller (across replicas) gets a probe lease; the probe's success closes the breaker, its
 * failure reopens it for another cooldown, and an abandoned probe's lease expires after `cooldownMs`.
 *
 * Fails open: if Redis cannot be reached, calls go ahead and the error is logged.
 *
 * The common case costs no Redis round trip: a replica that saw the breaker closed trusts that for
 * `LOCAL_TRUST_MS`, and a success resets the shared failure count only when this replica may have seen failures
 * (its own, or a state other than closed) — at most one reset per `LOCAL_TRUST_MS` otherwise. So another replica's
 * failures open the breaker here at most that long after they do there. Under steady traffic no call waits for
 * Redis either: a call in the last `REFRESH_AHEAD_MS` of the trust re-reads the state in the background (a read:
 * a half-open probe's lease is only ever taken by a call that asks), and the reset after a success is not awaited
 * (commands on one connection keep their order, so a later failure still lands after it). Between calls, a timer
 * renews the trust of every model called in the last `KEEP_WARM_MS` the same way, so sparse traffic (a call every
 * second, say) does not ask Redis before each call: the trust a call sees is never older than `LOCAL_TRUST_MS`
 * either way. That round trip woke Redis and then the router again before the model call: on the 2-vCPU VM, where a
 * wake-up after idling costs ~0.3–0.5 ms, within the noise of a sparse request's first token (bench/inference).
 */
export class RedisCircuitBreaker implements CircuitBreaker {
  private readonly closedUntil = new Map<string, number>();
  private readonly resetAt = new Map<string, number>();
  /** Models whose state is being re-read. */
  private readonly refreshing = new Set<string>();
  /** Per model, bumped by every local failure: a re-read begun before one must not restore the trust it ended. */
  private readonly failures = new Map<string, number>();
  /** Per model, when a call last asked (this replica's clock): the models whose trust the timer keeps renewed. */
  private readonly lastCalled = new Map<string, number>();
  private warmTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly policy: () => BreakerPolicy,
    private readonly logger: Logger,
    private readonly prefix = "tokenmesh:router:",
    /** The clock (epoch ms) every transition is decided by; replicas and tests may share one. */
    private readonly now: () => number = Date.now,
    /**
     * How often the timer renews warm models' trust (real time); 0: no timer, `renewWarm` is called by hand (tests
     * on a hand-moved clock, where a real timer would re-read the state at moments the test does not choose).
     */
    private readonly renewEveryMs = LOCAL_TRUST_MS - REFRESH_AHEAD_MS,
  ) {}

  private key(model: string): string {
    return `${this.prefix}breaker:{${model}}`;
  }

  async allow(model: string): Promise<boolean> {
    const policy = this.policy();
    if (!policy.enabled) return true;
    const now = this.now();
    this.lastCalled.set(model, now);
    if (this.renewEveryMs > 0) this.warmTimer ??= setInterval(() => this.renewWarm(), this.renewEveryMs).unref();
    const trustedUntil = this.closedUntil.get(model) ?? 0;
    if (trustedUntil > now) {
      if (trustedUntil - now <= REFRESH_AHEAD_MS) this.refresh(model, now);
      return true;
    }
    try {
      const [allowed, state] = (await this.redis.eval(ALLOW, 1, this.key(model), now, policy.cooldownMs)) as [
        number,
        BreakerState,
      ];
      this.observe(model, state);
      if (state === "closed") this.closedUntil.set(model, now + LOCAL_TRUST_MS);
      else this.closedUntil.delete(model);
      return allowed === 1;
    } catch (err) {
      this.logger.warn({ err: (err as Error).message, model }, "breaker unavailable; letting the call through");
      return true;
    }
  }

  /**
   * Re-reads, in the background, the state of every model called in the last `KEEP_WARM_MS` whose trust ends within
   * `REFRESH_AHEAD_MS` or has ended (the timer runs every `LOCAL_TRUST_MS - REFRESH_AHEAD_MS`), as a call would;
   * forgets the others, and stops the timer when none is left. Only a call that asks takes a half-open probe's lease.
   */
  renewWarm(): void {
    const now = this.now();
    for (const [model, at] of this.lastCalled) {
      if (now - at > KEEP_WARM_MS) {
        this.lastCalled.delete(model);
        continue;
      }
      const trustedUntil = this.closedUntil.get(model) ?? 0;
      if (trustedUntil - now <= REFRESH_AHEAD_MS) this.refresh(model, now);
    }
    if (this.lastCalled.size === 0) this.stop();
  }

  /** Stops the renewal timer (the process's shutdown; a later call starts it again). */
  stop(): void {
    clearInterval(this.warmTimer);
    this.warmTimer = undefined;
  }

  /**
   * Re-reads the state in the background (a read: it never takes a half-open probe's lease), without holding up the
   * call or the timer that noticed the trust is ending or has ended.
   */
  private refresh(model: string, now: number): void {
    if (this.refreshing.has(model)) return;
    const generation = this.failures.get(model) ?? 0;
    this.refreshing.add(model);
    this.redis.hget(this.key(model), "state").then(
      (state) => {
        this.refreshing.delete(model);
        if ((this.failures.get(model) ?? 0) !== generation) return;
        if (state === null || state === "closed") {
          this.closedUntil.set(model, now + LOCAL_TRUST_MS);
        } else {
          // Open or half-open elsewhere: the next call asks (and may get the probe's lease).
          this.closedUntil.delete(model);
          this.observe(model, state as BreakerState);
        }
      },
      (err: Error) => {
        this.refreshing.delete(model);
        this.logger.warn({ err: err.message, model }, "breaker unavailable");
      },
    );
  }

  async recordSuccess(model: string): Promise<void> {
    if (!this.policy().enabled) return;
    const now = this.now();
    // Closed and recently reset: nothing to clear (another replica's failures are picked up at the next reset).
    if ((this.closedUntil.get(model) ?? 0) > now && (this.resetAt.get(model) ?? 0) > now - LOCAL_TRUST_MS) return;
    this.resetAt.set(model, now);
    this.redis.del(this.key(model)).then(
      () => this.observe(model, "closed"),
      (err: Error) => this.logger.warn({ err: err.message, model }, "breaker unavailable"),
    );
  }

  async recordFailure(model: string): Promise<void> {
    const policy = this.policy();
    if (!policy.enabled) return;
    this.failures.set(model, (this.failures.get(model) ?? 0) + 1);
    this.closedUntil.delete(model);
    this.resetAt.delete(model);
    try {
      // Keep the record a while after the last failure, so old, scattered failures stop counting as consecutive.
      const ttlMs = Math.max(policy.cooldownMs * 10, 60_000);
      const state = (await this.redis.eval(
        FAILURE,
        1,
        this.key(model),
        this.now(),
        policy.failureThreshold,
        policy.cooldownMs,
        ttlMs,
      )) as BreakerState;
      this.observe(model, state);
    } catch (err) {
      this.logger.warn({ err: (err as Error).message, model }, "breaker unavailable");
    }
  }

  /** The stored state of `model`'s breaker (for the gauge and tests); "closed" when none is stored. */
  async state(model: string): Promise<BreakerState> {
    const state = await this.redis.hget(this.key(model), "state");
    return state === "open" || state === "half_open" ? state : "closed";
  }

  private observe(model: string, state: BreakerState): void {
    routerMetrics.breakerState.set({ model }, BREAKER_GAUGE[state] ?? 0);
  }
}
