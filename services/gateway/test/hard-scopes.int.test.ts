import { randomUUID } from "node:crypto";
import { createLogger } from "@tokenmesh/telemetry";
import { Redis } from "ioredis";
import { afterAll, describe, expect, inject, it, vi } from "vitest";
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

describe("RedisHardScopes, watching", () => {
  const url = inject("redisUrl");
  const redis = new Redis(url);
  const subscribers: Redis[] = [];
  const subscriber = () => {
    const s = new Redis(url);
    subscribers.push(s);
    return s;
  };
  afterAll(async () => {
    for (const s of subscribers) s.disconnect();
    await redis.quit();
  });
  const until = async (check: () => boolean | Promise<boolean>, what: string) => {
    const end = Date.now() + 10_000;
    while (!(await check())) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  const watchingReplicas = async (prefix: string, n: number) => {
    const replicas = Array.from({ length: n }, () => new RedisHardScopes(redis, logger, prefix));
    for (const r of replicas) await r.watch(subscriber());
    await until(() => replicas.every((r) => r.isWatching), "every replica watching");
    for (const r of replicas) expect(await r.has("k1", "", "")).toBe(false);
    return replicas;
  };

  it("reads no Redis key per request, and binds every replica from the moment update answers", async () => {
    const replicas = await watchingReplicas(`test:${randomUUID()}:`, 3);
    const gets = vi.spyOn(redis, "get");
    try {
      for (let i = 0; i < 20; i++) for (const r of replicas) expect(await r.has("k1", "research", "")).toBe(false);
      expect(gets).not.toHaveBeenCalled();
      await replicas[0]!.update("team", "research", true);
      // No waiting after update: each replica's next request already sees it (one read each), the rest none.
      for (let i = 0; i < 20; i++) for (const r of replicas) expect(await r.has("k1", "research", "")).toBe(true);
      expect(gets).toHaveBeenCalledTimes(3);
      await replicas[1]!.update("team", "research", false);
      for (const r of replicas) expect(await r.has("k1", "research", "")).toBe(false);
    } finally {
      gets.mockRestore();
      for (const r of replicas) await r.unwatch();
    }
  });

  it("does not answer a change until every watching replica has seen it", async () => {
    const prefix = `test:${randomUUID()}:`;
    const [a, slow] = await watchingReplicas(prefix, 2);
    // The slow replica's subscriber reads nothing for now (a stalled process).
    const socket = (subscribers.at(-1) as unknown as { stream: { pause(): void; resume(): void } }).stream;
    socket.pause();
    let answered = false;
    const update = a!.update("key", "k1", true).then(() => {
      answered = true;
    });
    // The first change of this prefix is version 1: the other replica has confirmed it, the stalled one cannot.
    await until(async () => (await redis.scard(`${prefix}hard-scopes:confirmed:1`)) === 1, "one confirmation");
    expect(answered).toBe(false);
    socket.resume();
    await update;
    expect(await slow!.has("k1", "", "")).toBe(true);
    await a!.unwatch();
    await slow!.unwatch();
  });

  it("reads per request while its subscription is down, and watches again once resubscribed", async () => {
    const prefix = `test:${randomUUID()}:`;
    const other = new RedisHardScopes(redis, logger, prefix);
    const replica = new RedisHardScopes(redis, logger, prefix);
    const sub = subscriber();
    const id = await sub.client("ID");
    await replica.watch(sub);
    await until(() => replica.isWatching, "watching");
    expect(await replica.has("k1", "", "bob")).toBe(false);
    await redis.client("KILL", "ID", String(id));
    await until(() => !replica.isWatching, "the subscription noticed as lost");
    // Changed while this replica hears nothing: it reads the version per request meanwhile.
    await other.update("user", "bob", true);
    expect(await replica.has("k1", "", "bob")).toBe(true);
    await until(() => replica.isWatching, "subscribed again");
    await other.update("user", "bob", false);
    expect(await replica.has("k1", "", "bob")).toBe(false);
    await replica.unwatch();
  });
});
