import { describe, expect, it } from "vitest";
import { ChunkChannel } from "./chunk-channel.js";

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function collect(ch: ChunkChannel<string>, intervalMs: number, onBatch?: (b: string[]) => void) {
  const out: string[][] = [];
  for await (const b of ch.batches(intervalMs)) {
    out.push(b);
    onBatch?.(b);
  }
  return out;
}

describe("ChunkChannel.batches", () => {
  it("hands over everything buffered at once and ends after the last item", async () => {
    const ch = new ChunkChannel<string>();
    ch.push("a");
    ch.push("b");
    ch.end();
    expect(await collect(ch, 0)).toEqual([["a", "b"]]);
  });

  it("without an interval, sends items pushed after a wake-up without waiting for more", async () => {
    const ch = new ChunkChannel<string>();
    const done = collect(ch, 0);
    ch.push("a");
    await tick(20);
    ch.push("b");
    await tick(20);
    ch.end();
    expect(await done).toEqual([["a"], ["b"]]);
  });

  it("with an interval, sends the first item at once and gathers later ones into one batch", async () => {
    const ch = new ChunkChannel<string>();
    const firstSeen: string[][] = [];
    const done = collect(ch, 5_000, (b) => firstSeen.push(b));
    ch.push("a");
    await tick(20);
    expect(firstSeen).toEqual([["a"]]); // the first token is never held back
    ch.push("b");
    await tick(20);
    ch.push("c");
    await tick(20);
    expect(firstSeen).toHaveLength(1); // b and c are held for the interval
    ch.push("d");
    const ending = Date.now();
    ch.end(); // the end flushes at once, without waiting out the 5 s interval (pushes while waiting included)
    expect(await done).toEqual([["a"], ["b", "c", "d"]]);
    expect(Date.now() - ending).toBeLessThan(2_500);
  });

  it("surfaces a failure that arrives while items are held back, after them", async () => {
    const ch = new ChunkChannel<string>();
    const seen: string[][] = [];
    const done = collect(ch, 5_000, (b) => seen.push(b));
    ch.push("a");
    await tick(10);
    ch.push("b");
    await tick(10);
    ch.fail(new Error("engine died"));
    await expect(done).rejects.toThrow("engine died");
    expect(seen).toEqual([["a"], ["b"]]);
  });
});
