export { type CatalogLogger, LiveCatalog, type LiveCatalogOptions } from "./live.js";
export {
  CatalogError,
  type CatalogWatcherOptions,
  findModel,
  loadCatalog,
  parseCatalog,
  watchCatalog,
} from "./load.js";
export { isAutoModel, reachableModels } from "./reach.js";
export * from "./schema.js";
