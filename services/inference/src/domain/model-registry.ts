import type { Catalog, ModelEntry } from "@tokenmesh/catalog";
import { AppError } from "@tokenmesh/runtime";
import type { Engine, ModelStatus } from "../engines/engine.js";

/** A catalog model with the engine that runs it. */
export interface ServedModel {
  entry: ModelEntry;
  engine: Engine;
}

export interface ModelRegistryOptions {
  engines: Record<ModelEntry["engine"], Engine>;
  /** Called when preparing a model fails (the model stays listed, not ready). */
  onLoadError?: (modelId: string, err: unknown) => void;
}

/**
 * The models this replica serves, swapped atomically when the catalog changes. A request resolves its model once
 * and keeps that entry until it ends, so a reload never changes or drops a request in flight; a model that left
 * the catalog is unloaded by its engine only after its requests finish (the engine's `unload` contract).
 */
export class ModelRegistry {
  private models = new Map<string, ServedModel>();
  private readonly engines: ModelRegistryOptions["engines"];

  constructor(private readonly options: ModelRegistryOptions) {
    this.engines = options.engines;
  }

  /** Applies a catalog: new and changed models are prepared, removed ones unloaded. */
  async apply(catalog: Catalog): Promise<void> {
    const next = new Map<string, ServedModel>();
    for (const entry of catalog.models) next.set(entry.id, { entry, engine: this.engines[entry.engine] });
    const previous = this.models;
    this.models = next;
    const loads: Promise<void>[] = [];
    for (const [id, served] of next) {
      const old = previous.get(id);
      if (old && JSON.stringify(old.entry) === JSON.stringify(served.entry)) continue;
      // An engine's load() reloads a changed model itself once the requests running on the old one finish.
      if (served.engine.load) {
        loads.push(served.engine.load(served.entry).catch((err) => this.options.onLoadError?.(id, err)));
      }
    }
    for (const [id, old] of previous) {
      if (!next.has(id)) await old.engine.unload?.(id);
    }
    await Promise.all(loads);
  }

  /** Resolves a catalog id (the router resolved aliases already); NOT_FOUND otherwise. */
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
