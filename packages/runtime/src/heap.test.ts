import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { commonEnv } from "./config.js";
import { heapGrowingFlag } from "./heap.js";

/**
 * A process that sets the flag as a service does (after V8 started), keeps ~20 MB alive and then allocates a fixed
 * amount of objects that each outlive two young GCs before they die (a service's promoted garbage); prints how many
 * full GCs that took. The amount of work is fixed, so the count does not depend on the machine's speed.
 */
const CHILD = `
  import { setFlagsFromString } from "node:v8";
  import { PerformanceObserver, constants } from "node:perf_hooks";
  const flag = process.argv[1];
  if (flag) setFlagsFromString(flag);
  let fullGcs = 0;
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) if (e.detail.kind === constants.NODE_PERFORMANCE_GC_MAJOR) fullGcs++;
  });
  obs.observe({ entryTypes: ["gc"] });
  const live = Array.from({ length: 200_000 }, (_, i) => ({ i, s: "x" + i }));
  const ring = new Array(100_000);
  for (let i = 0; i < 6_000_000; i++) ring[i % ring.length] = { i, a: [i, i] };
  setTimeout(() => { obs.disconnect(); console.log(fullGcs, live.length); }, 20);
`;

function fullGcsWith(flag: string | undefined): number {
  const out = execFileSync(
    process.execPath,
    ["--max-semi-space-size=1", "--input-type=module", "-e", CHILD, flag ?? ""],
    { encoding: "utf8" },
  );
  return Number(out.trim().split(" ")[0]);
}

describe("heapGrowingFlag", () => {
  it("is V8's flag, 0 leaving the factor to V8, and refuses what is not a percentage", () => {
    expect(heapGrowingFlag(200)).toBe("--heap-growing-percent=200");
    expect(heapGrowingFlag(0)).toBeUndefined();
    expect(() => heapGrowingFlag(-1)).toThrow(RangeError);
    expect(() => heapGrowingFlag(1.5)).toThrow(RangeError);
  });

  it("defaults to 200 in every service's environment, and an operator can turn it off", () => {
    expect(commonEnv.HEAP_GROWING_PERCENT.parse(undefined)).toBe(200);
    expect(commonEnv.HEAP_GROWING_PERCENT.parse("0")).toBe(0);
    expect(() => commonEnv.HEAP_GROWING_PERCENT.parse("-5")).toThrow();
  });

  it("set after V8 started, lets the old generation grow further between full GCs", () => {
    const tight = fullGcsWith(heapGrowingFlag(10));
    const roomy = fullGcsWith(heapGrowingFlag(200));
    // Growth of 1.1× against 3× what survived: 3-4× as many full GCs for the same garbage here (27-31 against 7-9);
    // without the flag taking effect both would be V8's own count.
    expect(tight).toBeGreaterThanOrEqual(2 * Math.max(1, roomy));
  }, 60_000);
});
