import { type Catalog, loadCatalog, watchCatalog } from "@tokenmesh/catalog";
import type { Logger } from "@tokenmesh/telemetry";
import { parseRoutes, type RouteConfig } from "../domain/routes.js";
import { routerMetrics } from "../metrics.js";

/** One consistent view of the catalog and its routes; requests take one at start and keep it to the end. */
export interface RoutingSnapshot {
  catalog: Catalog;
  routes: RouteConfig;
}

/**
 * Holds the current catalog and reloads it when the file changes. A reload only swaps the snapshot reference, so
 * requests in flight (streams included) finish on the snapshot they started with. An invalid edit (catalog or
 * `routes:` section) is logged and the previous snapshot stays in force.
 */
export class CatalogSource {
  private current: RoutingSnapshot | undefined;
  private stopWatching: (() => void) | undefined;

  constructor(
    private readonly path: string,
    private readonly logger: Logger,
  ) {}

  /** Loads the catalog; throws (CatalogError / RoutesError) when it is invalid, so start-up fails loudly. */
  async load(): Promise<RoutingSnapshot> {
    const catalog = await loadCatalog(this.path);
    this.current = { catalog, routes: parseRoutes(catalog) };
    return this.current;
  }

  /** Starts watching the file for changes. */
  watch(): void {
    this.stopWatching ??= watchCatalog(this.path, {
      onChange: (catalog) => {
        try {
          this.current = { catalog, routes: parseRoutes(catalog) };
          routerMetrics.catalogReloads.inc({ outcome: "ok" });
          this.logger.info({ models: catalog.models.length }, "catalog reloaded");
        } catch (err) {
          this.rejected(err);
        }
      },
      onError: (err) => this.rejected(err),
    });
  }

  /** The snapshot in force. Throws if `load` has not succeeded. */
  get snapshot(): RoutingSnapshot {
    if (!this.current) throw new Error("catalog not loaded");
    return this.current;
  }

  close(): void {
    this.stopWatching?.();
    this.stopWatching = undefined;
  }

  private rejected(err: unknown): void {
    routerMetrics.catalogReloads.inc({ outcome: "invalid" });
    this.logger.error({ err: (err as Error).message }, "catalog change rejected; keeping the previous catalog");
  }
}
