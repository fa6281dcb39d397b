import { resolve } from "node:path";
import { CatalogError, loadCatalog, watchCatalog } from "./load.js";
import type { Catalog } from "./schema.js";

/** The two log calls a live catalog makes (a pino logger fits). */
export interface CatalogLogger {
  info(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface LiveCatalogOptions<T> {
  /** The catalog file (MESH_CONFIG). */
  path: string;
  /**
   * Turns a valid catalog into the view this service keeps (routes, policies, prices…). Throwing rejects the
   * catalog: at start-up the error propagates; on a reload the previous view stays in force.
   */
  derive: (catalog: Catalog) => T;
  logger: CatalogLogger;
  /** What the logs call this view ("catalog", "guard policy", "prices"). */
  what?: string;
  /** Called after every reload attempt (for a reload counter metric). */
  onReload?: (outcome: "ok" | "invalid", view: T) => void;
  debounceMs?: number;
}

/**
 * A view of the catalog file kept current: `start` loads it (throwing CatalogError, or whatever `derive` throws,
 * so start-up fails loudly), then the file is watched and each valid change swaps the view in one assignment.
 * A caller that reads `current` once per request keeps one consistent view to its end, even across reloads; an
 * invalid edit is logged and never replaces a valid view.
 */
export class LiveCatalog<T = Catalog> {
  private view: T | undefined;
  private stopWatching: (() => void) | undefined;
  private readonly path: string;
  private readonly what: string;
  private isFixed = false;

  constructor(private readonly options: LiveCatalogOptions<T>) {
    this.path = resolve(options.path);
    this.what = options.what ?? "catalog";
  }

  /** A view that never changes (tests, benchmarks, tools). */
  static fixed<V>(view: V): LiveCatalog<V> {
    const live = new LiveCatalog<V>({
      path: "(fixed)",
      derive: () => view,
      logger: { info: () => undefined, error: () => undefined },
    });
    live.view = view;
    live.isFixed = true;
    return live;
  }

  /** Loads and derives the view, then watches the file. Idempotent once loaded. */
  async start(): Promise<T> {
    if (this.isFixed && this.view !== undefined) return this.view;
    const view = this.options.derive(await loadCatalog(this.path));
    this.view = view;
    this.stopWatching ??= watchCatalog(this.path, {
      debounceMs: this.options.debounceMs,
      onChange: (catalog) => {
        try {
          const next = this.options.derive(catalog);
          this.view = next;
          this.options.onReload?.("ok", next);
          this.options.logger.info({ path: this.path, models: catalog.models.length }, `${this.what} reloaded`);
        } catch (err) {
          this.rejected(err);
        }
      },
      onError: (err) => this.rejected(err),
    });
    return view;
  }

  /** The view in force. Throws CatalogError before `start` has succeeded. */
  get current(): T {
    if (this.view === undefined) throw new CatalogError(`${this.what} not loaded`);
    return this.view;
  }

  /** Whether a view has been loaded. */
  get loaded(): boolean {
    return this.view !== undefined;
  }

  /** Stops watching; `current` stays readable. */
  close(): void {
    this.stopWatching?.();
    this.stopWatching = undefined;
  }

  private rejected(err: unknown): void {
    if (this.view !== undefined) this.options.onReload?.("invalid", this.view);
    this.options.logger.error(
      { path: this.path, err: (err as Error).message },
      `${this.what} change rejected; keeping the previous one`,
    );
  }
}
