import type { Logger } from "@tokenmesh/telemetry";
import type { Redis } from "ioredis";
import { bucketOf, type Histogram, type LatencyStats, mergeHistogram, percentileOf } from "../domain/latency.js";

export interface RedisLatencyStatsOptions {
  /** Key prefix (the router's ROUTER_REDIS_PREFIX). */
  prefix?: string;
  /** Width of one time slot (default 30 s). */
  slotMs?: number;
  /** Slots in the sliding window (default 10: the last 5 minutes with 30 s slots). */
  slots?: number;
  /** How often buffered samples are written and the shared histograms read (default 1 s). */
  syncMs?: number;
  /** Samples a percentile needs before it is trusted (default 20). */
  minSamples?: number;
  now?: () => number;
}

/**
 * Time to first token per model, shared by every router replica through Redis as sliding-window histograms: one
 * hash per model per time slot (`<prefix>lat:<model>:<slot>`, bucket → count, expiring after the window), with
 * the fixed buckets of domain/latency.ts so replicas' counts add up.
 *
 * Nothing touches Redis on the request path: `record` buffers in memory and `percentile` reads the last merged
 * view. A background sync, once per `syncMs`, writes the buffered counts (one pipelined HINCRBY per bucket touched)
 * and reads the window of the models asked about in the last window (one pipelined HGETALL per model and slot).
 * Samples recorded here count at once; other replicas' within one sync. A Redis outage only makes the view stale.
 */
export class RedisLatencyStats implements LatencyStats {
  private readonly prefix: string;
  private readonly slotMs: number;
  private readonly slots: number;
  private readonly syncMs: number;
  private readonly minSamples: number;
  private readonly now: () => number;
  /** model → slot → histogram, not yet written. */
  private pending = new Map<string, Map<number, Histogram>>();
  /** model → merged window, as last read from Redis. */
  private shared = new Map<string, Histogram>();
  /** model → when it was last asked about or recorded. */
  private readonly interest = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private syncing: Promise<void> | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly logger: Logger,
    options: RedisLatencyStatsOptions = {},
  ) {
    this.prefix = options.prefix ?? "";
    this.slotMs = options.slotMs ?? 30_000;
    this.slots = options.slots ?? 10;
    this.syncMs = options.syncMs ?? 1_000;
    this.minSamples = options.minSamples ?? 20;
    this.now = options.now ?? Date.now;
  }

  record(modelId: string, ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) return;
    const slot = Math.floor(this.now() / this.slotMs);
    const h = slotHistogram(this.pending, modelId, slot);
    const b = bucketOf(ms);
    h.set(b, (h.get(b) ?? 0) + 1);
    this.interest.set(modelId, this.now());
  }

  percentile(modelId: string, p: number): number | undefined {
    this.interest.set(modelId, this.now());
    return percentileOf(this.view(modelId), p, this.minSamples);
  }

  /** The shared window plus what this replica recorded since the last sync. */
  private view(modelId: string): Histogram {
    const out = mergeHistogram(new Map(), this.shared.get(modelId) ?? new Map());
    for (const h of this.pending.get(modelId)?.values() ?? []) mergeHistogram(out, h);
    return out;
  }

  private key(modelId: string, slot: number): string {
    return `${this.prefix}lat:${modelId}:${slot}`;
  }

  /** Writes buffered samples and reads the window of every model of interest. Never throws. */
  sync(): Promise<void> {
    this.syncing ??= this.runSync().finally(() => {
      this.syncing = undefined;
    });
    return this.syncing;
  }

  private async runSync(): Promise<void> {
    const now = this.now();
    const current = Math.floor(now / this.slotMs);
    const ttlMs = this.slotMs * (this.slots + 1);
    const writing = this.pending;
    this.pending = new Map();
    const pipeline = this.redis.pipeline();
    for (const [model, bySlot] of writing) {
      for (const [slot, h] of bySlot) {
        const key = this.key(model, slot);
        for (const [b, n] of h) pipeline.hincrby(key, String(b), n);
        pipeline.pexpire(key, ttlMs);
      }
    }
    const models = [...this.interest].filter(([, at]) => now - at <= this.slotMs * this.slots).map(([m]) => m);
    for (const [m, at] of this.interest) if (now - at > this.slotMs * this.slots) this.interest.delete(m);
    for (const model of models) for (let i = 0; i < this.slots; i++) pipeline.hgetall(this.key(model, current - i));
    try {
      const results = (await pipeline.exec()) ?? [];
      const reads = results.slice(results.length - models.length * this.slots);
      const shared = new Map<string, Histogram>();
      models.forEach((model, mi) => {
        const h: Histogram = new Map();
        for (let i = 0; i < this.slots; i++) {
          const [err, raw] = reads[mi * this.slots + i] ?? [null, null];
          if (err || raw === null || typeof raw !== "object") continue;
          for (const [b, n] of Object.entries(raw as Record<string, string>)) {
            h.set(Number(b), (h.get(Number(b)) ?? 0) + Number(n));
          }
        }
        shared.set(model, h);
      });
      this.shared = shared;
    } catch (err) {
      // Not written: put the samples back so the next sync tries again (bounded by the window's slots).
      for (const [model, bySlot] of writing) {
        for (const [slot, h] of bySlot) {
          if (slot <= current - this.slots) continue;
          mergeHistogram(slotHistogram(this.pending, model, slot), h);
        }
      }
      this.logger.debug({ err: (err as Error).message }, "latency stats sync failed");
    }
  }

  /** Starts the background sync. */
  start(): void {
    this.timer ??= setInterval(() => void this.sync(), this.syncMs);
    this.timer.unref();
  }

  /** Stops the background sync after one last write of buffered samples. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.sync();
  }
}

function slotHistogram(pending: Map<string, Map<number, Histogram>>, model: string, slot: number): Histogram {
  let bySlot = pending.get(model);
  if (bySlot === undefined) {
    bySlot = new Map();
    pending.set(model, bySlot);
  }
  let h = bySlot.get(slot);
  if (h === undefined) {
    h = new Map();
    bySlot.set(slot, h);
  }
  return h;
}
