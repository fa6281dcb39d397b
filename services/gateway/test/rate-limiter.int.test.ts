import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, describe, expect, inject, it } from "vitest";
import { RedisRateLimiter } from "../src/adapters/rate-limiter.js";

const connections: Redis[] = [];
function limiter(): RedisRateLimiter {
  const redis = new Redis(inject("redisUrl"));
  connections.push(redis);
  return new RedisRateLimiter(redis);
}

afterAll(async () => {
  await Promise.all(connections.map((c) => c.quit()));
});

describe("RedisRateLimiter", () => {
  it("lets exactly rpm requests through across three limiter instances", async () => {
    const replicas = [limiter(), limiter(), limiter()];
    const keyId = `key_${randomUUID()}`;
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => replicas[i % 3]!.acquire(keyId, { rpm: 60, tpm: 0 }, `r${i}`, 10)),
    );
    const allowed = results.filter((r) => r.allowed);
    expect(allowed).toHaveLength(60);
    const refused = results.find((r) => !r.allowed)!;
    expect(refused.limitedBy).toBe("requests");
    expect(refused.resetMs).toBeGreaterThan(0);
    expect(refused.resetMs).toBeLessThanOrEqual(60_000);
  });

  it("holds estimated tokens and frees the difference when usage is known", async () => {
    const rl = limiter();
    const keyId = `key_${randomUUID()}`;
    expect((await rl.acquire(keyId, { rpm: 0, tpm: 1000 }, "a", 600)).allowed).toBe(true);
    const second = await rl.acquire(keyId, { rpm: 0, tpm: 1000 }, "b", 600);
    expect(second).toMatchObject({ allowed: false, limitedBy: "tokens" });
    await rl.settle(keyId, "a", 600, 150);
    const third = await rl.acquire(keyId, { rpm: 0, tpm: 1000 }, "c", 600);
    expect(third.allowed).toBe(true);
    expect(third.remainingTokens).toBe(1000 - 150 - 600);
  });

  it("skips Redis for keys without limits", async () => {
    const rl = limiter();
    const d = await rl.acquire(`key_${randomUUID()}`, { rpm: 0, tpm: 0 }, "x", 10);
    expect(d).toMatchObject({ allowed: true, remainingRequests: -1 });
  });
});
