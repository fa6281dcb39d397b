import { setFlagsFromString } from "node:v8";

/**
 * How far V8 lets the old generation grow after a full GC before it starts the next one, as a percentage of what
 * survived: 200 lets it reach ~3×. Left to itself V8 picks the factor that keeps GC under ~3 % of CPU (~1.2–1.4× in
 * the gateway and the router here), which at 500 rps meant a full GC every 4–5 s in each, holding its event loop
 * ~25–30 ms over ~50 ms (incremental steps and the final pause): most of the mesh's p99 at that rate
 * (bench/gateway/README.md, stop 22). It costs memory: V8's heap limit under a 256 MiB cgroup is still ~259 MB, so
 * under a tight container limit (the Kubernetes manifests) 0, which leaves the factor to V8, is the safer choice.
 */
export function heapGrowingFlag(percent: number): string | undefined {
  if (!Number.isInteger(percent) || percent < 0) throw new RangeError(`heap growing percent: ${percent}`);
  return percent === 0 ? undefined : `--heap-growing-percent=${percent}`;
}

/** Applies {@link heapGrowingFlag} to this process (V8 reads it at every full GC, so it takes effect from the next). */
export function setHeapGrowingPercent(percent: number): void {
  const flag = heapGrowingFlag(percent);
  if (flag !== undefined) setFlagsFromString(flag);
}
