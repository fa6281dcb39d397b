import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ChunkChannel } from "./chunk-channel.js";

// The channel's clock (setTimeout, performance.now) is faked, so "held back for the interval" and "sent at once"
// are exact, not a race against real time. setImmediate stays real: after a wake-up the channel lets two turns of
// the check phase pass before it hands a batch over, so `advance` lets a few pass before and after it moves the
// clock (the channel reacts to what was pushed at the current time, then to the timers that fell due).
async function settle() {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
async function advance(ms: number) {
  await settle();
  await vi.advanceTimersByTimeAsync(ms);
  await settle();
}

async function collect(ch: ChunkChannel<string>, intervalMs: number, onBatch?: (b: string[]) => void) {
  const out: string[][] = [];
  for await (const b of ch.batches(intervalMs)) {
    out.push(b);
    onBatch?.(b);
  }
  return out;
}

/** The promise's outcome once settled, `undefined` while pending (checked after the clock was advanced). */
function settled<T>(p: Promise<T>): () => { value: T } | { error: unknown } | undefined {
  let outcome: { value: T } | { error: unknown } | undefined;
  p.then(
    (value) => {
      outcome = { value };
    },
    (error: unknown) => {
      outcome = { error };
    },
  );
  return () => outcome;
}

describe("ChunkChannel.batches", () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("hands over everything buffered at once and ends after the last item", async () => {
    const ch = new ChunkChannel<string>();
    ch.push("a");
    ch.push("b");
    ch.end();
    expect(await collect(ch, 0)).toEqual([["a", "b"]]);
  });

  it("without an interval, sends items pushed after a wake-up without waiting for more", async () => {
    const ch = new ChunkChannel<string>();
    const seen: string[][] = [];
    const done = collect(ch, 0, (b) => seen.push(b));
    ch.push("a");
    await advance(0);
    expect(seen).toEqual([["a"]]); // sent with no time passing
    ch.push("b");
    await advance(0);
    expect(seen).toEqual([["a"], ["b"]]);
    ch.end();
    await advance(0);
    expect(await done).toEqual([["a"], ["b"]]);
  });

  it("with an interval, sends the first item at once and gathers later ones into one batch", async () => {
    const ch = new ChunkChannel<string>();
    const firstSeen: string[][] = [];
    const done = collect(ch, 5_000, (b) => firstSeen.push(b));
    ch.push("a");
    await advance(0);
    expect(firstSeen).toEqual([["a"]]); // the first token is never held back
    ch.push("b");
    await advance(20);
    ch.push("c");
    await advance(4_960); // 4 980 ms of the 5 000 ms interval gone, every timer due by then has run
    expect(firstSeen).toHaveLength(1); // b and c are held for the interval
    ch.push("d");
    const outcome = settled(done);
    ch.end(); // the end flushes at once, without waiting out the interval (pushes while waiting included)
    await advance(0);
    expect(outcome()).toEqual({ value: [["a"], ["b", "c", "d"]] });
  });

  it("sends what it gathered once the interval has passed", async () => {
    const ch = new ChunkChannel<string>();
    const seen: string[][] = [];
    const done = collect(ch, 5_000, (b) => seen.push(b));
    ch.push("a");
    await advance(0);
    ch.push("b");
    await advance(4_999);
    expect(seen).toEqual([["a"]]);
    await advance(1);
    expect(seen).toEqual([["a"], ["b"]]);
    ch.end();
    await advance(0);
    expect(await done).toEqual([["a"], ["b"]]);
  });

  it("surfaces a failure that arrives while items are held back, after them", async () => {
    const ch = new ChunkChannel<string>();
    const seen: string[][] = [];
    const done = collect(ch, 5_000, (b) => seen.push(b));
    const outcome = settled(done);
    ch.push("a");
    await advance(10);
    ch.push("b");
    await advance(10);
    expect(seen).toEqual([["a"]]); // b is held back
    ch.fail(new Error("engine died"));
    await advance(0);
    expect(outcome()).toMatchObject({ error: new Error("engine died") });
    await expect(done).rejects.toThrow("engine died");
    expect(seen).toEqual([["a"], ["b"]]);
  });
});
