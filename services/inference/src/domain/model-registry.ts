import type { Catalog, LocalModelEntry } from "@tokenmesh/catalog";
import { AppError } from "@tokenmesh/runtime";
import type { Engine, ModelStatus } from "../engines/engine.js";

/** A catalog model with the engine that runs it. */
export interface ServedModel {
  entry: LocalModelEntry;
  engine: Engine;
}

export interface ModelRegistryOptions {
  /** The engine of `engine: local` entries. */
  local: Engine;
  /** Called when preparing a model fails (the model stays listed, not ready). */
  onLoadError?: (modelId: string, err: unknown) => void;
}

/**
 * The local models this replica serves, swapped atomically when the catalog changes. Remote entries of the shared
 * catalog are skipped (the router calls their providers itself). A request resolves its model once and keeps that
 * entry until it ends, so a reload never changes or drops a request in flight; a model that left the catalog is
 * unloaded by its engine only after its requests finish (the engine's `unload` contract).
 */
export class ModelRegistry {
  private models = new Map<string, ServedModel>();

  constructor(private readonly options: ModelRegistryOptions) {}

  /** Applies a catalog: new and changed local models are prepared, removed ones unloaded. */
  async apply(catalog: Catalog): Promise<void> {
    const engine = this.options.local;
    const next = new Map<string, ServedModel>();
    for (const entry of catalog.models) if (entry.engine === "local") next.set(entry.id, { entry, engine });
    const previous = this.models;
    this.models = next;
    const loads: Promise<void>[] = [];
    for (const [id, served] of next) {
      const old = previous.get(id);
      if (old && JSON.stringify(old.entry) === JSON.stringify(served.entry)) continue;
      // An engine's load() reloads a changed model itself once the requests running on the old one finish.
      if (engine.load) loads.push(engine.load(served.entry).catch((err) => this.options.onLoadError?.(id, err)));
    }
    for (const [id, old] of previous) {
      if (!next.has(id)) await old.engine.unload?.(id);
    }
    await Promise.all(loads);
  }

  /**
   * Resolves a catalog id (the router resolved aliases already); NOT_FOUND otherwise, including for a remote model
   * of the catalog, which this service does not serve.
   */
  get(modelId: string): ServedModel {
    const served = this.models.get(modelId);
    if (!served) {
      throw new AppError("NOT_FOUND", `model "${modelId}" is not served by this inference replica`, {
        reason: "model_not_found",
        param: "model",
      });
    }
    return served;
  }

  list(): (ServedModel & { status: ModelStatus })[] {
    return [...this.models.values()].map((m) => ({ ...m, status: m.engine.status(m.entry) }));
  }
}
