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
});
