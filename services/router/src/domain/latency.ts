/**
 * Latency statistics as fixed log-spaced histograms: every replica uses the same bucket boundaries, so histograms
 * from several replicas (and several time slots) merge by adding counts. A percentile is read as the upper bound
 * of the bucket it falls in: at most 20 % above the true value, never below it (a hedge then starts a little late
 * rather than too early).
 */

/** Bucket i holds values in (BOUNDS[i-1], BOUNDS[i]] ms; the last bucket is open-ended. */
export const BUCKET_BOUNDS_MS: readonly number[] = (() => {
  const out: number[] = [];
  for (let b = 1; b < 600_000; b *= 1.2) out.push(Math.round(b * 100) / 100);
  return out;
})();

/** The bucket a value (ms) falls in. */
export function bucketOf(ms: number): number {
  let lo = 0;
  let hi = BUCKET_BOUNDS_MS.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((BUCKET_BOUNDS_MS[mid] as number) < ms) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Bucket index → count; sparse. */
export type Histogram = Map<number, number>;

/** Adds `from` into `into`. */
export function mergeHistogram(into: Histogram, from: ReadonlyMap<number, number>): Histogram {
  for (const [b, n] of from) into.set(b, (into.get(b) ?? 0) + n);
  return into;
}

export function histogramCount(h: ReadonlyMap<number, number>): number {
  let n = 0;
  for (const c of h.values()) n += c;
  return n;
}

/**
 * The `p`th percentile (0 < p ≤ 100) of a histogram, in ms: the upper bound of the bucket holding the
 * ⌈p % × count⌉th smallest value. Undefined when the histogram has fewer than `minSamples` values.
 */
export function percentileOf(h: ReadonlyMap<number, number>, p: number, minSamples = 1): number | undefined {
  const total = histogramCount(h);
  if (total === 0 || total < minSamples) return undefined;
  const rank = Math.max(1, Math.ceil((p / 100) * total));
  let seen = 0;
  for (const b of [...h.keys()].sort((x, y) => x - y)) {
    seen += h.get(b) ?? 0;
    if (seen >= rank) return BUCKET_BOUNDS_MS[b] ?? (BUCKET_BOUNDS_MS.at(-1) as number);
  }
  return BUCKET_BOUNDS_MS.at(-1);
}

/**
 * Recent time-to-first-token statistics per model, shared by router replicas. Reads are local and synchronous
 * (never a store round trip on the request path); `record` must not block or throw.
 */
export interface LatencyStats {
  /** Records one attempt's time to first token. */
  record(modelId: string, ms: number): void;
  /** The model's recent `p`th percentile of time to first token, or undefined while samples are too few. */
  percentile(modelId: string, p: number): number | undefined;
}
