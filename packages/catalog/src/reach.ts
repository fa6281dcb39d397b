import { findModel } from "./load.js";
import type { Catalog, ModelEntry } from "./schema.js";

/** Whether a requested name asks the router to choose (`auto`, `auto:<tier>`). */
export function isAutoModel(name: string): boolean {
  return name === "auto" || name.startsWith("auto:");
}

/** Tier → member ids, from `routes.auto.tiers` when present, otherwise from the models' own `tier` fields. */
function tiersOf(catalog: Catalog): Map<string, string[]> {
  const tiers = new Map<string, string[]>();
  const auto = (catalog.routes as { auto?: { tiers?: Record<string, unknown> } } | undefined)?.auto;
  if (auto?.tiers && typeof auto.tiers === "object") {
    for (const [tier, ids] of Object.entries(auto.tiers)) {
      if (Array.isArray(ids))
        tiers.set(
          tier,
          ids.filter((id): id is string => typeof id === "string"),
        );
    }
    return tiers;
  }
  for (const m of catalog.models) {
    if (m.tier) tiers.set(m.tier, [...(tiers.get(m.tier) ?? []), m.id]);
  }
  return tiers;
}

/**
 * Every catalog model a request for `name` may end up being served by: the named model and its fallback chain
 * (transitively), or for `auto` any member of any tier and for `auto:<tier>` that tier's members, each with its
 * fallbacks. Only models of `kind`. A superset of what the router can choose, whatever it decides at run time
 * (readiness, scoring, breakers): what a worst-case budget hold must cover. Empty for an unknown name.
 */
export function reachableModels(catalog: Catalog, name: string, kind: ModelEntry["kind"]): ModelEntry[] {
  const start: ModelEntry[] = [];
  if (isAutoModel(name)) {
    const tiers = tiersOf(catalog);
    const wanted = name === "auto" ? [...tiers.values()].flat() : (tiers.get(name.slice(5)) ?? []);
    for (const id of wanted) {
      const m = findModel(catalog, id);
      if (m) start.push(m);
    }
  } else {
    const m = findModel(catalog, name);
    if (m) start.push(m);
  }
  const seen = new Map<string, ModelEntry>();
  const visit = (m: ModelEntry) => {
    if (seen.has(m.id)) return;
    seen.set(m.id, m);
    for (const id of m.fallbacks) {
      const next = findModel(catalog, id);
      if (next) visit(next);
    }
  };
  for (const m of start) visit(m);
  return [...seen.values()].filter((m) => m.kind === kind);
}
