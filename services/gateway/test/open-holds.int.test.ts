import { randomUUID } from "node:crypto";
import type { UsageRecorded } from "@tokenmesh/proto/events/v1/events";
import { createLogger } from "@tokenmesh/telemetry";
import { waitFor } from "@tokenmesh/testing";
import { Redis } from "ioredis";
import { afterEach, describe, expect, inject, it } from "vitest";
import { GATEWAY_LOST, RedisOpenHolds } from "../src/adapters/open-holds.js";
import type { OpenHold } from "../src/domain/ports.js";

const logger = createLogger({ service: "open-holds-test", level: "silent" });

function hold(requestId: string): OpenHold {
  return { reservationId: requestId, requestId, keyId: "key-1", team: "team-a", user: "u", modelRequested: "gpt-fake" };
}

/** A usage sink that stores every event at once (what JetStream's ack would say). */
function sink() {
  const events: UsageRecorded[] = [];
  return { events, record: (e: UsageRecorded) => void events.push(e) };
}

describe("RedisOpenHolds", () => {
  const cleanup: (() => unknown)[] = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  function replica(prefix: string) {
    const redis = new Redis(inject("redisUrl"), { maxRetriesPerRequest: 0 });
    const usage = sink();
    const holds = new RedisOpenHolds({ redis, sink: usage, logger, ttlMs: 300, sweepMs: 60_000, prefix });
    cleanup.push(() => redis.disconnect());
    return { redis, holds, events: usage.events };
  }

  it("settles the open holds of a dead replica once, and forgets it", async () => {
    const prefix = `test-${randomUUID()}:`;
    const a = replica(prefix);
    const b = replica(prefix);
    await a.holds.start();
    await b.holds.start();
    cleanup.push(() => b.holds.stop());
    for (const id of ["r1", "r2", "r3"]) await a.holds.open(hold(id));
    // r2's own event was stored: it is never settled by the sweep.
    a.holds.close("r2", Promise.resolve());
    await waitFor(async () => (await a.redis.hexists(`${prefix}holds:${a.holds.id}`, "r2")) === 0);

    // Killed: its connection and heartbeat are gone, its holds left behind.
    a.redis.disconnect();
    cleanup.push(() => a.holds.stop(0).catch(() => undefined));
    await waitFor(async () => (await b.redis.exists(`${prefix}alive:${a.holds.id}`)) === 0);

    expect(await b.holds.sweep()).toBe(2);
    expect(b.events.map((e) => e.reservationId).sort()).toEqual(["r1", "r3"]);
    for (const e of b.events) {
      expect(e).toMatchObject({
        status: "error",
        errorCode: GATEWAY_LOST,
        inputTokens: 0,
        outputTokens: 0,
        keyId: "key-1",
        team: "team-a",
        user: "u",
        modelRequested: "gpt-fake",
      });
      expect(e.requestId).toBe(e.reservationId);
    }
    expect(await b.redis.exists(`${prefix}holds:${a.holds.id}`)).toBe(0);
    expect(await b.redis.smembers(`${prefix}replicas`)).toEqual([b.holds.id]);
    // Idempotent: a second sweep (or another replica's) finds nothing left.
    expect(await b.holds.sweep()).toBe(0);
    expect(b.events).toHaveLength(2);
  });

  it("never sweeps the holds of a live replica", async () => {
    const prefix = `test-${randomUUID()}:`;
    const a = replica(prefix);
    const b = replica(prefix);
    await a.holds.start();
    await b.holds.start();
    cleanup.push(
      () => a.holds.stop(),
      () => b.holds.stop(),
    );
    await a.holds.open(hold("live-1"));
    // Several heartbeats' worth: the heartbeat outlives its TTL only because it is refreshed.
    const since = Date.now();
    await waitFor(async () => {
      expect(await b.holds.sweep()).toBe(0);
      return Date.now() - since > 1_000;
    });
    expect(b.events).toHaveLength(0);
    expect(await a.redis.hget(`${prefix}holds:${a.holds.id}`, "live-1")).not.toBeNull();
  });

  it("keeps a hold whose event was not stored, for a sweep after the replica is gone", async () => {
    const prefix = `test-${randomUUID()}:`;
    const a = replica(prefix);
    const b = replica(prefix);
    await a.holds.start();
    await b.holds.start();
    cleanup.push(() => b.holds.stop());
    await a.holds.open(hold("refused"));
    await a.holds.open(hold("stored"));
    a.holds.close("refused", Promise.reject(new Error("outbox full")));
    a.holds.close("stored", Promise.resolve());
    // A graceful stop: the heartbeat goes, the hold that was never reported stays for another replica.
    await a.holds.stop();
    expect(await a.redis.exists(`${prefix}alive:${a.holds.id}`)).toBe(0);
    expect(await b.holds.sweep()).toBe(1);
    expect(b.events.map((e) => e.reservationId)).toEqual(["refused"]);
    expect(await b.redis.sismember(`${prefix}replicas`, a.holds.id)).toBe(0);
  });

  it("leaves a hold whose own event waits in the outbox journal to the journal's recovery", async () => {
    const prefix = `test-${randomUUID()}:`;
    const journalKey = `${prefix}journal`;
    const redis = new Redis(inject("redisUrl"));
    cleanup.push(() => redis.disconnect());
    const events = sink();
    const a = new RedisOpenHolds({ redis, sink: sink(), logger, ttlMs: 300, sweepMs: 60_000, prefix, id: "dead" });
    const b = new RedisOpenHolds({ redis, sink: events, logger, ttlMs: 300, sweepMs: 60_000, prefix, journalKey });
    await redis.sadd(`${prefix}replicas`, "dead");
    await a.open(hold("journaled"));
    await a.open(hold("lost"));
    await redis.hset(journalKey, "journaled", "{}");
    expect(await b.sweep()).toBe(1);
    expect(events.events.map((e) => e.reservationId)).toEqual(["lost"]);
    expect(await redis.exists(`${prefix}holds:dead`)).toBe(0);
  });

  it("shuts down cleanly: no hold left, the replica unregistered", async () => {
    const prefix = `test-${randomUUID()}:`;
    const a = replica(prefix);
    await a.holds.start();
    await a.holds.open(hold("done"));
    a.holds.close("done", Promise.resolve());
    await a.holds.stop();
    expect(await a.redis.keys(`${prefix}*`)).toEqual([]);
  });
});
