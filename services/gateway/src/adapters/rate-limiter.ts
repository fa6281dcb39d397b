import type { Redis } from "ioredis";

// Sliding-window log per key, over the last 60 s of Redis server time, so every gateway replica sees one window:
// KEYS[1] = the key's request log (zset of request ids), KEYS[2] = its token log (zset of "<id>|<tokens>").
// ARGV: rpm, tpm (0 = unlimited), request id, estimated tokens. Returns
// {allowed, limited_by, requests_in_window, tokens_in_window, reset_ms}.
const ACQUIRE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local win = 60000
local rpm, tpm, id, est = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local reqs, used = 0, 0
if rpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - win)
  reqs = redis.call('ZCARD', KEYS[1])
  if reqs >= rpm then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return {0, 'requests', reqs, 0, tonumber(oldest[2]) + win - now}
  end
end
if tpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - win)
  local members = redis.call('ZRANGE', KEYS[2], 0, -1)
  for _, m in ipairs(members) do used = used + tonumber(string.match(m, '|(%d+)$')) end
  if used + est > tpm then
    local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    local reset = win
    if oldest[2] then reset = tonumber(oldest[2]) + win - now end
    return {0, 'tokens', reqs, used, reset}
  end
end
if rpm > 0 then
  redis.call('ZADD', KEYS[1], now, id)
  redis.call('PEXPIRE', KEYS[1], win)
end
if tpm > 0 then
  redis.call('ZADD', KEYS[2], now, id .. '|' .. est)
  redis.call('PEXPIRE', KEYS[2], win)
end
return {1, '', reqs + 1, used + est, 0}
`;

// Replaces a request's estimated token count by its real usage, keeping its place in the window.
const CORRECT = `
local member = ARGV[1] .. '|' .. ARGV[2]
local score = redis.call('ZSCORE', KEYS[1], member)
if not score then return 0 end
redis.call('ZREM', KEYS[1], member)
redis.call('ZADD', KEYS[1], score, ARGV[1] .. '|' .. ARGV[3])
return 1
`;

export interface RateDecision {
  allowed: boolean;
  limitedBy: "requests" | "tokens" | "";
  remainingRequests: number;
  remainingTokens: number;
  /** When the window frees capacity again, in ms. */
  resetMs: number;
}

/**
 * Per-key requests-per-minute and tokens-per-minute limits, enforced by one atomic Redis script so the limits
 * hold exactly across any number of gateway replicas. Tokens are held from the request's estimate and
 * corrected with `settle` when usage is known.
 */
export class RedisRateLimiter {
  constructor(private readonly redis: Redis) {
    redis.defineCommand("tmRateAcquire", { numberOfKeys: 2, lua: ACQUIRE });
    redis.defineCommand("tmRateCorrect", { numberOfKeys: 1, lua: CORRECT });
  }

  private keys(keyId: string): [string, string] {
    // One hash tag per key id, so both logs live on one Redis Cluster slot.
    return [`tm:rl:{${keyId}}:req`, `tm:rl:{${keyId}}:tok`];
  }

  async acquire(
    keyId: string,
    limits: { rpm: number; tpm: number },
    requestId: string,
    estimate: number,
  ): Promise<RateDecision> {
    if (limits.rpm <= 0 && limits.tpm <= 0) {
      return { allowed: true, limitedBy: "", remainingRequests: -1, remainingTokens: -1, resetMs: 0 };
    }
    const [allowed, limitedBy, reqs, used, reset] = await (
      this.redis as unknown as {
        tmRateAcquire(...a: (string | number)[]): Promise<[number, string, number, number, number]>;
      }
    ).tmRateAcquire(...this.keys(keyId), limits.rpm, limits.tpm, requestId, Math.max(0, Math.ceil(estimate)));
    return {
      allowed: allowed === 1,
      limitedBy: limitedBy as RateDecision["limitedBy"],
      remainingRequests: limits.rpm > 0 ? Math.max(0, limits.rpm - reqs) : -1,
      remainingTokens: limits.tpm > 0 ? Math.max(0, limits.tpm - used) : -1,
      resetMs: reset,
    };
  }

  /** Corrects a held estimate to the real token count. */
  async settle(keyId: string, requestId: string, estimate: number, actual: number): Promise<void> {
    const tokKey = this.keys(keyId)[1];
    await (this.redis as unknown as { tmRateCorrect(...a: (string | number)[]): Promise<number> }).tmRateCorrect(
      tokKey,
      requestId,
      Math.max(0, Math.ceil(estimate)),
      Math.max(0, Math.ceil(actual)),
    );
  }
}
