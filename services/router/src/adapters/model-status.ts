import type { ModelEntry } from "@tokenmesh/catalog";
import type { ModelInfo } from "@tokenmesh/proto/common/v1/chat";
import { isRemoteModel, type Providers } from "@tokenmesh/providers";
import type { Logger } from "@tokenmesh/telemetry";

/**
 * A short-lived cache of inference's ListModels (readiness and device per local model), so `auto` can prefer ready
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

/** What the router knows of a model's readiness right now. */
export interface ModelReadinessInfo {
  ready: boolean;
  /** "remote" for provider models; the inference device ("cpu", "cuda", …) for local ones, "" when unknown. */
  device: string;
  /** Why a model is not ready, when known (e.g. its key env var is unset). */
  detail?: string;
}

/**
 * Readiness of every catalog model from where it is served: remote models in-process from their provider engine
 * (ready when their key env var is set, or none is needed; no network call), local models from inference's
 * ListModels through the {@link ModelStatusCache}.
 */
export class ModelReadiness {
  constructor(
    private readonly providers: Pick<Providers, "status">,
    private readonly local: ModelStatusCache,
  ) {}

  /** Whether `model` can serve now; a local model counts as ready while inference's view is unknown. */
  isReady(model: ModelEntry): boolean {
    return isRemoteModel(model) ? this.providers.status(model).ready : this.local.isReady(model.id);
  }

  /**
   * The readiness of each of `models`, refreshing inference's view first when it is stale. A local model reads as
   * not ready while inference is unreachable: callers should not count on it.
   */
  async describe(models: readonly ModelEntry[]): Promise<Map<string, ModelReadinessInfo>> {
    const live = models.some((m) => !isRemoteModel(m)) ? await this.local.get() : undefined;
    const out = new Map<string, ModelReadinessInfo>();
    for (const m of models) {
      if (isRemoteModel(m)) {
        out.set(m.id, this.providers.status(m));
        continue;
      }
      const info = live?.get(m.id);
      out.set(m.id, { ready: info?.ready ?? false, device: info?.device ?? "" });
    }
    return out;
  }
}
