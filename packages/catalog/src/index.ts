export * from "./schema.js";
export { CatalogError, findModel, loadCatalog, parseCatalog, watchCatalog, type CatalogWatcherOptions } from "./load.js";
