import { type Catalog, type CatalogLogger, LiveCatalog } from "@tokenmesh/catalog";
import type { Price } from "../domain/pricing.js";

/** A model's price and output cap, as the catalog states them. */
export interface ModelPricing {
  price: Price;
  maxOutputTokens: number;
}

/** Looks up prices by model id or alias. */
export interface PriceTable {
  /** Undefined when the catalog does not know the model. */
  lookup(model: string): ModelPricing | undefined;
}

/** A price table over a fixed list of models (tests, benchmarks). */
export function staticPriceTable(models: Record<string, ModelPricing>): PriceTable {
  return { lookup: (model) => models[model] };
}

function fromCatalog(catalog: Catalog): Map<string, ModelPricing> {
  const byName = new Map<string, ModelPricing>();
  for (const m of catalog.models) {
    const pricing: ModelPricing = {
      price: {
        inputPerMtok: m.price.input_per_mtok,
        outputPerMtok: m.price.output_per_mtok,
        cachedInputPerMtok: m.price.cached_input_per_mtok,
      },
      maxOutputTokens: m.max_output_tokens,
    };
    for (const name of [m.id, ...m.aliases]) byName.set(name, pricing);
  }
  return byName;
}

/**
 * Prices from the catalog file (MESH_CONFIG), reloaded when the file changes; an invalid edit is logged and the
 * previous prices stay in force. A price change applies to events priced after the reload (events already in
 * the ledger keep the price they were recorded at).
 */
export class CatalogPriceTable implements PriceTable {
  private readonly live: LiveCatalog<Map<string, ModelPricing>>;

  constructor(path: string, logger: CatalogLogger) {
    this.live = new LiveCatalog({ path, derive: fromCatalog, logger, what: "prices" });
  }

  /** Loads the catalog (throws CatalogError when it is invalid) and starts watching it. */
  async start(): Promise<void> {
    await this.live.start();
  }

  stop(): void {
    this.live.close();
  }

  lookup(model: string): ModelPricing | undefined {
    return this.live.current.get(model);
  }
}
