import type { ModelInfo } from "@tokenmesh/proto/common/v1/chat";
import type { Logger } from "@tokenmesh/telemetry";

/**
 * A short-lived cache of inference's ListModels (readiness and device per model), so `auto` can prefer ready
 * models without a round trip per request. When inference is unreachable the snapshot is `undefined`
 * ("unknown"), never a stale view.
 */
export class ModelStatusCache {
  private snapshot: Map<string, ModelInfo> | undefined;
  private fetchedAt = Number.NEGATIVE_INFINITY;
  private inflight: Promise<Map<string, ModelInfo> | undefined> | undefined;

  constructor(
    private readonly fetch: () => Promise<ModelInfo[]>,
    private readonly logger: Logger,
    private readonly ttlMs = 5_000,
  ) {}

  /** The current snapshot, refreshed first when older than the TTL; undefined when inference is unreachable. */
  get(): Promise<Map<string, ModelInfo> | undefined> {
    if (Date.now() - this.fetchedAt < this.ttlMs) return Promise.resolve(this.snapshot);
    return this.refresh();
  }

  /** The last snapshot without waiting (starting a refresh in the background when stale). */
  peek(): Map<string, ModelInfo> | undefined {
    if (Date.now() - this.fetchedAt >= this.ttlMs) void this.refresh();
    return this.snapshot;
  }

  /** Whether `id` is ready; true when unknown, so an unreachable status never hides every model. */
  isReady(id: string): boolean {
    const snapshot = this.peek();
    if (snapshot === undefined) return true;
    return snapshot.get(id)?.ready ?? false;
  }

  private refresh(): Promise<Map<string, ModelInfo> | undefined> {
    this.inflight ??= this.fetch()
      .then(
        (models) => new Map(models.map((m) => [m.id, m])),
        (err: unknown) => {
          this.logger.debug({ err: (err as Error).message }, "inference ListModels failed");
          return undefined;
        },
      )
      .then((snapshot) => {
        this.snapshot = snapshot;
        this.fetchedAt = Date.now();
        this.inflight = undefined;
        return snapshot;
      });
    return this.inflight;
  }
}
