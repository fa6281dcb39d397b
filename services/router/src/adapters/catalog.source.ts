import { type Catalog, LiveCatalog, type ModelEntry } from "@tokenmesh/catalog";
import type { Logger } from "@tokenmesh/telemetry";
import { parseRoutes, type RouteConfig } from "../domain/routes.js";
import { routerMetrics } from "../metrics.js";

/** One consistent view of the catalog and its routes; requests take one at start and keep it to the end. */
export interface RoutingSnapshot {
  catalog: Catalog;
  routes: RouteConfig;
  /** The catalog's models by id. */
  models: ReadonlyMap<string, ModelEntry>;
}

/** Derives the routing view of a catalog; throws RoutesError when its `routes:` section is invalid. */
export function routingSnapshot(catalog: Catalog): RoutingSnapshot {
  return { catalog, routes: parseRoutes(catalog), models: new Map(catalog.models.map((m) => [m.id, m])) };
}

/**
 * The router's live view of the catalog file (MESH_CONFIG): loaded at start (an invalid catalog or `routes:` section
 * fails start-up), then swapped in one assignment on every valid change, so requests in flight (streams included)
 * finish on the snapshot they started with. An invalid edit is logged and the previous snapshot stays in force.
 * Reloads are counted in `tokenmesh_router_catalog_reloads_total` by outcome.
 */
export function catalogSource(path: string, logger: Logger): LiveCatalog<RoutingSnapshot> {
  return new LiveCatalog({
    path,
    derive: routingSnapshot,
    logger,
    onReload: (outcome) => routerMetrics.catalogReloads.inc({ outcome }),
  });
}
