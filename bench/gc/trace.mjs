// Reads V8's `--trace-gc-nvp` output, shared by the benchmarks that measure what the young-generation GC keeps.

/**
 * The GCs in a `--trace-gc-nvp` log, in order: each line "[pid:isolate:0] <ms> ms: pause=… gc=s … promoted=… …" as
 * `{ atMs, young, ...numeric fields }` (`young`: a scavenge, else a full GC; `atMs`: since the process started).
 */
export function gcEvents(text) {
  return text
    .split("\n")
    .filter((l) => / gc=\w+ /.test(l))
    .map((l) => ({
      atMs: Number(/\]\s+(\d+)\s+ms:/.exec(l)?.[1] ?? 0),
      young: / gc=s /.test(l),
      ...Object.fromEntries([...l.matchAll(/(\w+)=([\d.]+)/g)].map((m) => [m[1], Number(m[2])])),
    }));
}

/** The median of numbers (0 for none). */
export function median(xs) {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
}
