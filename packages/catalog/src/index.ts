export {
  CatalogError,
  type CatalogWatcherOptions,
  findModel,
  loadCatalog,
  parseCatalog,
  watchCatalog,
} from "./load.js";
export * from "./schema.js";
