import { describe, expect, it } from "vitest";
import { SlotPool } from "./slot-pool.js";

const live = () => new AbortController().signal;

describe("SlotPool", () => {
  it("hands out free slots, then queues, then refuses with RESOURCE_EXHAUSTED", async () => {
    const pool = new SlotPool(["a", "b"], 1, "m");
    expect(await pool.acquire(live())).toBe("b");
    expect(await pool.acquire(live())).toBe("a");
    const waiting = pool.acquire(live());
    expect(pool.queued).toBe(1);
    await expect(pool.acquire(live())).rejects.toMatchObject({ code: "RESOURCE_EXHAUSTED", retryable: true });
    pool.release("a");
    expect(await waiting).toBe("a");
    expect(pool.active).toBe(2);
  });

  it("serves waiters first in, first out", async () => {
    const pool = new SlotPool(["a"], 5, "m");
    await pool.acquire(live());
    const order: number[] = [];
    const waits = [1, 2, 3].map(async (i) => {
      const slot = await pool.acquire(live());
      order.push(i);
      pool.release(slot);
    });
    pool.release("a");
    await Promise.all(waits);
    expect(order).toEqual([1, 2, 3]);
    expect(pool.active).toBe(0);
  });

  it("gives a released slot to an interactive waiter before queued batch waiters", async () => {
    const pool = new SlotPool(["a"], 10, "m");
    await pool.acquire(live(), { priority: -1 });
    const order: string[] = [];
    const wait = (name: string, priority: number) =>
      pool.acquire(live(), { priority, tenant: "t" }).then((slot) => {
        order.push(name);
        pool.release(slot);
      });
    const waits = [wait("b1", -1), wait("b2", -1), wait("b3", -1), wait("i1", 1)];
    pool.release("a");
    await Promise.all(waits);
    expect(order).toEqual(["i1", "b1", "b2", "b3"]);
  });

  it("removes an aborted waiter from the queue at once", async () => {
    const depths: number[] = [];
    const pool = new SlotPool(["a"], 2, "m", { queueDepth: (n) => depths.push(n), active: () => {} });
    await pool.acquire(live());
    const ctrl = new AbortController();
    const w = pool.acquire(ctrl.signal);
    ctrl.abort();
    await expect(w).rejects.toMatchObject({ code: "CANCELLED" });
    expect(pool.queued).toBe(0);
    expect(depths).toEqual([1, 0]);
  });

  it("rejects waiters and new callers after close", async () => {
    const pool = new SlotPool(["a"], 2, "m");
    await pool.acquire(live());
    const w = pool.acquire(live());
    pool.close();
    await expect(w).rejects.toMatchObject({ code: "UNAVAILABLE" });
    await expect(pool.acquire(live())).rejects.toMatchObject({ code: "UNAVAILABLE" });
  });
});
