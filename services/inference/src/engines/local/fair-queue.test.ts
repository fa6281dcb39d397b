import { describe, expect, it } from "vitest";
import { BATCH, classOf, FairQueue, INTERACTIVE, STANDARD } from "./fair-queue.js";

function clocked(agingMs = 1_000) {
  let t = 0;
  const q = new FairQueue<string>(agingMs, () => t);
  return { q, advance: (ms: number) => (t += ms) };
}

function all(q: FairQueue<string>): string[] {
  const out: string[] = [];
  for (let v = q.shift(); v !== undefined; v = q.shift()) out.push(v);
  return out;
}

describe("FairQueue", () => {
  it("serves a higher class first, FIFO within one tenant and class", () => {
    const { q, advance } = clocked();
    q.push("b1", BATCH, "t");
    advance(1);
    q.push("b2", BATCH, "t");
    advance(1);
    q.push("s1", STANDARD, "t");
    advance(1);
    q.push("i1", INTERACTIVE, "t");
    advance(1);
    q.push("i2", INTERACTIVE, "t");
    expect(all(q)).toEqual(["i1", "i2", "s1", "b1", "b2"]);
    expect(q.size).toBe(0);
  });

  it("reads RequestContext.priority: below 0 batch, 0 or unset standard, above 0 interactive", () => {
    expect([-1, -7, 0, undefined, 1, 3].map(classOf)).toEqual([
      BATCH,
      BATCH,
      STANDARD,
      STANDARD,
      INTERACTIVE,
      INTERACTIVE,
    ]);
  });

  it("ages a waiting request by one class per aging period, so batch is never starved", () => {
    const { q, advance } = clocked(1_000);
    q.push("old-batch", BATCH, "t");
    advance(2_000);
    // Arrived exactly two periods after the batch request: equal rank, the higher class wins the tie.
    q.push("interactive-2-periods-later", INTERACTIVE, "t");
    advance(1);
    // Arrived later than that: the batch request has aged past it.
    q.push("interactive-later", INTERACTIVE, "t");
    expect(all(q)).toEqual(["interactive-2-periods-later", "old-batch", "interactive-later"]);
  });

  it("lets tenants take turns within a class, so one tenant's burst does not starve another", () => {
    const { q, advance } = clocked();
    for (let i = 1; i <= 4; i++) {
      q.push(`a${i}`, BATCH, "a");
      advance(1);
    }
    q.push("b1", BATCH, "b");
    advance(1);
    q.push("c1", BATCH, "c");
    expect(all(q)).toEqual(["a1", "b1", "c1", "a2", "a3", "a4"]);
  });

  it("is plain FIFO with one class and one tenant", () => {
    const { q, advance } = clocked(10);
    for (let i = 0; i < 20; i++) {
      q.push(String(i), BATCH, "");
      advance(7);
    }
    expect(all(q)).toEqual(Array.from({ length: 20 }, (_, i) => String(i)));
  });

  it("removes a waiter before it is served, once", () => {
    const { q } = clocked();
    q.push("a", BATCH, "t");
    const t = q.push("b", BATCH, "t");
    expect(q.remove(t)).toBe(true);
    expect(q.remove(t)).toBe(false);
    expect(q.size).toBe(1);
    expect(all(q)).toEqual(["a"]);
  });
});
