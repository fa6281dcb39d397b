import { randomUUID } from "node:crypto";
import { createLogger } from "@tokenmesh/telemetry";
import { Redis } from "ioredis";
import { afterAll, describe, expect, inject, it } from "vitest";
import { RedisHardScopes } from "../src/adapters/hard-scopes.js";

const logger = createLogger({ service: "hard-scopes-test", level: "silent" });

describe("RedisHardScopes", () => {
  const redis = new Redis(inject("redisUrl"));
  afterAll(async () => {
    await redis.quit();
  });

  it("makes a budget set through one replica binding on every replica from its next request", async () => {
    const prefix = `test:${randomUUID()}:`;
    const replicas = [0, 1, 2].map(() => new RedisHardScopes(redis, logger, prefix));
    // Each replica has loaded the (empty) set once.
    for (const r of replicas) expect(await r.has("k1", "", "")).toBe(false);
    await replicas[0]!.update("team", "research", true);
    for (const r of replicas) expect(await r.has("k1", "research", "")).toBe(true);
    await replicas[2]!.update("team", "research", false);
    for (const r of replicas) expect(await r.has("k1", "research", "")).toBe(false);
  });

  it("only adds what the cost service lists, and fails closed when Redis is unreadable", async () => {
    const prefix = `test:${randomUUID()}:`;
    const scopes = new RedisHardScopes(redis, logger, prefix);
    await scopes.update("key", "kept", true);
    expect(await scopes.reconcile(["user:bob", "key:kept"])).toBe(1);
    expect(await scopes.has("x", "", "bob")).toBe(true);
    expect(await scopes.has("kept", "", "")).toBe(true);
    const broken = new Redis({ port: 1, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    try {
      expect(await new RedisHardScopes(broken, logger, prefix).has("nobody", "", "")).toBe(true);
    } finally {
      broken.disconnect();
    }
  });
});
