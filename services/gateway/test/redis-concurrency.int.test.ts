import { randomUUID } from "node:crypto";
import { createLogger } from "@tokenmesh/telemetry";
import { Redis } from "ioredis";
import { afterAll, describe, expect, inject, it } from "vitest";
import { RedisConcurrencyLimiter } from "../src/adapters/redis-concurrency.js";
import type { ConcurrencyLease, ConcurrencyRequest, LimitSpec, QueueSettings } from "../src/domain/concurrency.js";
import type { PriorityName } from "../src/domain/priority.js";

const logger = createLogger({ service: "gateway-test", level: "silent" });
const connections: Redis[] = [];
const limiters: RedisConcurrencyLimiter[] = [];
const admin = new Redis(inject("redisUrl"));

async function replica(): Promise<RedisConcurrencyLimiter> {
  const redis = new Redis(inject("redisUrl"));
  connections.push(redis);
  const l = new RedisConcurrencyLimiter(redis, logger);
  await l.start();
  limiters.push(l);
  return l;
}

afterAll(async () => {
  await Promise.all(limiters.map((l) => l.stop()));
  await Promise.all([...connections, admin].map((c) => c.quit()));
});

const QUEUE: QueueSettings = { maxWaitMs: 20_000, maxDepth: 100, agingMs: 60_000, leaseMs: 15_000 };

function req(
  limits: LimitSpec[],
  o: { priority?: PriorityName; signal?: AbortSignal; queue?: Partial<QueueSettings>; maxWaitMs?: number } = {},
): ConcurrencyRequest {
  const queue = { ...QUEUE, ...o.queue };
  return {
    requestId: `req_${randomUUID()}`,
    limits,
    priority: o.priority ?? "interactive",
    model: "m",
    queue,
    maxWaitMs: o.maxWaitMs ?? queue.maxWaitMs,
    signal: o.signal,
  };
}

/** Waiters queued at a limit (every class). */
async function depth(limit: string): Promise<number> {
  const p = "tm:cc:{tmcc}:o:";
  const n = await Promise.all([1, 2, 3].map((c) => admin.zcard(`${p}${limit}:${c}`)));
  return n.reduce((a, b) => a + b, 0);
}

async function until(cond: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setImmediate(r));
  }
}

describe("RedisConcurrencyLimiter", () => {
  it("never lets more than the limit run at once across three replicas, and serves everyone", async () => {
    const replicas = [await replica(), await replica(), await replica()];
    const limit: LimitSpec = { id: `model:${randomUUID()}`, cap: 3, tenant: "t" };
    let running = 0;
    let peak = 0;
    await Promise.all(
      Array.from({ length: 30 }, async (_, i) => {
        const lease = await replicas[i % 3]!.acquire(req([limit], { priority: "batch" }));
        running++;
        peak = Math.max(peak, running);
        // Hold across a few event-loop turns so holders overlap.
        for (let k = 0; k < 5; k++) await new Promise((r) => setImmediate(r));
        running--;
        lease.release();
      }),
    );
    expect(peak).toBe(3);
    expect(await depth(limit.id)).toBe(0);
  });

  it("serves a queued interactive request before earlier batch requests, on another replica too", async () => {
    const [a, b] = [await replica(), await replica()];
    const limit: LimitSpec = { id: `model:${randomUUID()}`, cap: 1, tenant: "t" };
    const holder = await a.acquire(req([limit]));
    const order: string[] = [];
    const wait = (r: RedisConcurrencyLimiter, name: string, priority: PriorityName) =>
      r.acquire(req([limit], { priority })).then((lease) => {
        order.push(name);
        lease.release();
      });
    // One at a time, so their arrival order in Redis is the order they were sent in.
    const waits: Promise<void>[] = [];
    for (const [r, name] of [
      [a, "b1"],
      [b, "b2"],
      [a, "b3"],
    ] as const) {
      waits.push(wait(r, name, "batch"));
      await until(async () => (await depth(limit.id)) === waits.length);
    }
    waits.push(wait(b, "i1", "interactive"));
    await until(async () => (await depth(limit.id)) === 4);
    holder.release();
    await Promise.all(waits);
    expect(order).toEqual(["i1", "b1", "b2", "b3"]);
  });

  it("lets tenants take turns: one tenant's burst does not starve another's single request", async () => {
    const r = await replica();
    const model = `model:${randomUUID()}`;
    const holder = await r.acquire(req([{ id: model, cap: 1, tenant: "team:a" }]));
    const order: string[] = [];
    const waits: Promise<void>[] = [];
    const wait = (name: string, tenant: string) => {
      waits.push(
        r.acquire(req([{ id: model, cap: 1, tenant }], { priority: "standard" })).then((lease) => {
          order.push(name);
          lease.release();
        }),
      );
    };
    for (let i = 1; i <= 4; i++) {
      wait(`a${i}`, "team:a");
      await until(async () => (await depth(model)) === i);
    }
    wait("b1", "team:b");
    await until(async () => (await depth(model)) === 5);
    holder.release();
    await Promise.all(waits);
    expect(order).toEqual(["a1", "b1", "a2", "a3", "a4"]);
  });

  it("ages a waiting batch request past interactive requests that came much later", async () => {
    const r = await replica();
    const limit: LimitSpec = { id: `model:${randomUUID()}`, cap: 1, tenant: "t" };
    const queue = { agingMs: 100 };
    const holder = await r.acquire(req([limit], { queue }));
    const order: string[] = [];
    const wait = (name: string, priority: PriorityName) =>
      r.acquire(req([limit], { priority, queue })).then((lease) => {
        order.push(name);
        lease.release();
      });
    const [sec, usec] = await admin.time();
    const queuedAt = Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
    const waits = [wait("old-batch", "batch")];
    await until(async () => (await depth(limit.id)) === 1);
    // Two aging periods (Redis time) after the batch request, an interactive one ranks below it.
    await until(async () => {
      const [s, u] = await admin.time();
      return Number(s) * 1000 + Math.floor(Number(u) / 1000) > queuedAt + 250;
    });
    waits.push(wait("late-interactive", "interactive"));
    await until(async () => (await depth(limit.id)) === 2);
    holder.release();
    await Promise.all(waits);
    expect(order).toEqual(["old-batch", "late-interactive"]);
  });

  it("takes a key, team and model limit together and queues at the first one that is full", async () => {
    const r = await replica();
    const id = randomUUID();
    const limits: LimitSpec[] = [
      { id: `key:${id}`, cap: 2, tenant: "" },
      { id: `team:${id}`, cap: 5, tenant: `key:${id}` },
      { id: `model:${id}`, cap: 1, tenant: `team:${id}` },
    ];
    const first = await r.acquire(req(limits));
    const second = r.acquire(req(limits));
    // The second holds a key and a team slot and waits at the model.
    await until(async () => (await depth(`model:${id}`)) === 1);
    expect(await admin.zcard(`tm:cc:{tmcc}:h:key:${id}`)).toBe(2);
    // A third is refused by the key's limit at once when it may not wait.
    await expect(r.acquire(req(limits, { maxWaitMs: 0 }))).rejects.toMatchObject({
      code: "RESOURCE_EXHAUSTED",
      reason: "concurrency_limit",
      retryAfterMs: expect.any(Number),
    });
    first.release();
    (await second).release();
    await until(async () => (await admin.zcard(`tm:cc:{tmcc}:h:key:${id}`)) === 0);
    expect(await admin.zcard(`tm:cc:{tmcc}:h:model:${id}`)).toBe(0);
  });

  it("refuses with 429 once the queue is full or the wait runs out", async () => {
    const r = await replica();
    const limit: LimitSpec = { id: `model:${randomUUID()}`, cap: 1, tenant: "t" };
    const holder = await r.acquire(req([limit]));
    const queued = r.acquire(req([limit], { queue: { maxDepth: 1 } }));
    await until(async () => (await depth(limit.id)) === 1);
    await expect(r.acquire(req([limit], { queue: { maxDepth: 1 } }))).rejects.toMatchObject({
      code: "RESOURCE_EXHAUSTED",
      reason: "concurrency_limit",
      message: expect.stringContaining("queue is full"),
    });
    const timedOut = r.acquire(req([limit], { maxWaitMs: 50 }));
    await expect(timedOut).rejects.toMatchObject({ code: "RESOURCE_EXHAUSTED", reason: "concurrency_limit" });
    holder.release();
    (await queued).release();
    expect(await depth(limit.id)).toBe(0);
  });

  it("takes an aborted waiter out of the queue at once", async () => {
    const r = await replica();
    const limit: LimitSpec = { id: `model:${randomUUID()}`, cap: 1, tenant: "t" };
    const holder = await r.acquire(req([limit]));
    const ctrl = new AbortController();
    const waiting = r.acquire(req([limit], { signal: ctrl.signal }));
    await until(async () => (await depth(limit.id)) === 1);
    ctrl.abort();
    await expect(waiting).rejects.toMatchObject({ code: "CANCELLED" });
    expect(await depth(limit.id)).toBe(0);
    holder.release();
    // The slot went nowhere: a new request gets it straight away.
    const next = await r.acquire(req([limit], { maxWaitMs: 0 }));
    next.release();
  });

  it("takes out a waiter whose client left while it was being enqueued", async () => {
    const r = await replica();
    const limit: LimitSpec = { id: `model:${randomUUID()}`, cap: 1, tenant: "t" };
    const holder = await r.acquire(req([limit]));
    const ctrl = new AbortController();
    // The abort lands after the enqueue script ran in Redis and before acquire() listens for it (seen once in CI:
    // the waiter then sat in the queue until its maximum wait).
    const run = (r as unknown as { run: (op: string, ...a: unknown[]) => Promise<unknown> }).run.bind(r);
    (r as unknown as { run: typeof run }).run = async (op, ...a) => {
      const out = await run(op, ...a);
      if (op === "acquire") ctrl.abort();
      return out;
    };
    // Unnoticed, the abort would leave it waiting out its 1 s and be refused RESOURCE_EXHAUSTED instead.
    await expect(r.acquire(req([limit], { signal: ctrl.signal, maxWaitMs: 1_000 }))).rejects.toMatchObject({
      code: "CANCELLED",
    });
    expect(await depth(limit.id)).toBe(0);
    holder.release();
  });

  it("gives a crashed holder's slot to a waiter on another replica when its lease expires", async () => {
    const crashed = await replica();
    const survivor = await replica();
    const limit: LimitSpec = { id: `model:${randomUUID()}`, cap: 1, tenant: "t" };
    const queue = { leaseMs: 1_000 };
    const held: ConcurrencyLease = await crashed.acquire(req([limit], { queue }));
    // The holder's replica dies: it stops refreshing and never releases.
    await crashed.stop();
    const started = Date.now();
    const lease = await survivor.acquire(req([limit], { queue, priority: "batch" }));
    expect(Date.now() - started).toBeGreaterThanOrEqual(500);
    lease.release();
    void held;
  });

  it("needs no Redis for a request without limits", async () => {
    const r = new RedisConcurrencyLimiter(new Redis("redis://127.0.0.1:1", { lazyConnect: true }), logger);
    const lease = await r.acquire(req([]));
    lease.release();
  });
});
