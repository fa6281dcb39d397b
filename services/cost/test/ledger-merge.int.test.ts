import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, describe, expect, inject, it } from "vitest";
import { RedisLedger } from "../src/adapters/redis-ledger.js";
import type { LedgerEntry } from "../src/domain/usage.js";

describe("one request reported twice (the gateway's event and the router's)", () => {
  const redis = new Redis(inject("redisUrl"));
  afterAll(async () => {
    await redis.quit();
  });
  const ledgerFor = () =>
    new RedisLedger(redis, {
      prefix: `merge-${randomUUID()}:`,
      reservationTimeoutMs: 60_000,
      retentionDays: 1,
      maxBatch: 16,
    });
  const entry = (fields: Partial<LedgerEntry>): LedgerEntry => ({
    requestId: "req-1",
    reservationId: "",
    day: "2026-11-30",
    month: "2026-11",
    keyId: "k1",
    team: "",
    user: "",
    model: "m",
    costNano: 0,
    inputTokens: 0,
    outputTokens: 0,
    cachedTokens: 0,
    error: false,
    ...fields,
  });
  const totals = async (ledger: RedisLedger) => (await ledger.usage("key", "k1", ["2026-11-30"])).totals;

  it("bills the larger report once, in either order, and counts one request", async () => {
    const partial = entry({ inputTokens: 10, outputTokens: 4, costNano: 140, error: true });
    const full = entry({ inputTokens: 10, outputTokens: 30, costNano: 400 });
    for (const order of [
      [partial, full],
      [full, partial],
    ]) {
      const ledger = ledgerFor();
      expect((await ledger.record(order[0]!)).duplicate).toBe(false);
      expect((await ledger.record(order[1]!)).duplicate).toBe(order[1] === partial);
      const t = await totals(ledger);
      expect(t).toMatchObject({ requests: 1, inputTokens: 10, outputTokens: 30, costUsd: 400 / 1e9 });
      // The first report decides whether the request counts as an error.
      expect(t.errors).toBe(order[0] === partial ? 1 : 0);
    }
  });

  it("takes each field's largest value, and a third report that adds nothing is a duplicate", async () => {
    const ledger = ledgerFor();
    await ledger.record(entry({ inputTokens: 50, outputTokens: 5, costNano: 550 }));
    await ledger.record(entry({ inputTokens: 12, outputTokens: 20, costNano: 320 }));
    expect((await ledger.record(entry({ inputTokens: 50, outputTokens: 20, costNano: 550 }))).duplicate).toBe(true);
    expect(await totals(ledger)).toMatchObject({ requests: 1, inputTokens: 50, outputTokens: 20, costUsd: 550 / 1e9 });
  });
  it("adds a batch's usage once per hash field, and keeps each usage hash's retention", async () => {
    const prefix = `batch-${randomUUID()}:`;
    const ledger = new RedisLedger(redis, { prefix, reservationTimeoutMs: 60_000, retentionDays: 1, maxBatch: 16 });
    const hash = `${prefix}u:key:k1:2026-11-30`;
    // Ten requests on two models and a second, larger report of one of them, all in one batch (one turn).
    const first = Array.from({ length: 10 }, (_, k) =>
      entry({ requestId: `b-${k}`, model: k % 2 ? "m" : "n", inputTokens: 10 + k, outputTokens: 5, costNano: 100 }),
    );
    const again = entry({ requestId: "b-0", model: "n", inputTokens: 10, outputTokens: 9, costNano: 130 });
    const results = await Promise.all([...first, again].map((e) => ledger.record(e)));
    expect(results.map((r) => r.duplicate)).toEqual([...first.map(() => false), false]);
    expect(await totals(ledger)).toMatchObject({
      requests: 10,
      inputTokens: 145,
      outputTokens: 54,
      costUsd: 1030 / 1e9,
    });
    expect(await redis.hgetall(hash)).toMatchObject({ "n|r": "5", "m|r": "5", "n|i": "70", "m|i": "75", "n|o": "29" });
    expect(await redis.ttl(hash)).toBeGreaterThan(0);
    // A hash that lost its retention gets it back from a report that adds to it, and from a model new to it.
    await redis.persist(hash);
    await ledger.record(entry({ requestId: "b-1", model: "m", inputTokens: 11, outputTokens: 50, costNano: 100 }));
    expect(await redis.ttl(hash)).toBeGreaterThan(0);
    await redis.persist(hash);
    await ledger.record(entry({ requestId: "b-new", model: "o", inputTokens: 1, outputTokens: 1 }));
    expect(await redis.ttl(hash)).toBeGreaterThan(0);
    // A model already in it does not re-arm it on a new request (as before: only the first request of a model does).
    await redis.persist(hash);
    await ledger.record(entry({ requestId: "b-next", model: "o", inputTokens: 1, outputTokens: 1 }));
    expect(await redis.ttl(hash)).toBe(-1);
  });
});
