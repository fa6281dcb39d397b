import type { Catalog, ModelEntry } from "@tokenmesh/catalog";
import { AppError } from "@tokenmesh/runtime";
import type { RouteConfig } from "./routes.js";

/** What a request needs from a model. */
export type ModelKind = "chat" | "embedding";

/** The name that asks the router to choose: `auto` uses the default tier, `auto:<tier>` a named one. */
export const AUTO = "auto";

/** Where a requested name led. */
export interface Resolution {
  /** The name the caller sent. */
  requested: string;
  /** The model tried first. */
  model: ModelEntry;
  /** Models in the order they are tried: the first is `model`; ids are unique and all of `kind`. */
  candidates: ModelEntry[];
  /** The tier `auto` chose from, if the name was `auto`. */
  tier: string | undefined;
}

/** Whether a model can serve now (loaded and reachable); used only to pick within an `auto` tier. */
export type ReadinessFn = (modelId: string) => boolean;

function notFound(name: string, detail = ""): AppError {
  return new AppError("NOT_FOUND", `The model "${name}" does not exist${detail}`, {
    reason: "model_not_found",
    param: "model",
    retryable: false,
  });
}

/** Looks a model up by id first, then by alias (ids win if an alias ever shadows one). */
export function lookupModel(catalog: Catalog, name: string): ModelEntry | undefined {
  return catalog.models.find((m) => m.id === name) ?? catalog.models.find((m) => m.aliases.includes(name));
}

/**
 * Resolves a requested model name to the models to try, in order.
 *
 * - An id or alias resolves to that model; its candidates are `[model, ...model.fallbacks]`, deduplicated, with
 *   unknown ids and models of another kind left out.
 * - `auto` (or `auto:<tier>`) takes the tier's members of the requested kind and picks the first that `isReady`
 *   says is ready (the first member when none is, so the caller gets the model's real error rather than a guess).
 *   Its candidates are the pick, its fallbacks, then the tier's other members.
 *
 * Throws AppError NOT_FOUND (reason "model_not_found", param "model") for an unknown name or tier, and
 * INVALID_ARGUMENT (param "model") when the model is of another kind than the request (a chat request to an
 * embedding model, or the reverse).
 */
export function resolveModel(
  catalog: Catalog,
  routes: RouteConfig,
  name: string,
  kind: ModelKind,
  isReady: ReadinessFn = () => true,
): Resolution {
  if (name === "") {
    throw new AppError("INVALID_ARGUMENT", "A model is required", { param: "model", reason: "model_required" });
  }
  const byId = new Map(catalog.models.map((m) => [m.id, m]));
  if (name === AUTO || name.startsWith(`${AUTO}:`)) {
    const tier = name === AUTO ? routes.defaultTier : name.slice(AUTO.length + 1);
    const members = tier === undefined ? undefined : routes.tiers.get(tier);
    if (tier === undefined || members === undefined)
      throw notFound(name, tier === undefined ? " (no tiers are configured)" : "");
    const eligible = members
      .map((id) => byId.get(id))
      .filter((m): m is ModelEntry => m !== undefined && m.kind === kind);
    const pick = eligible.find((m) => isReady(m.id)) ?? eligible[0];
    if (pick === undefined) throw notFound(name, ` (tier "${tier}" has no ${kind} model)`);
    return { requested: name, model: pick, candidates: chain(pick, byId, kind, eligible), tier };
  }
  const model = lookupModel(catalog, name);
  if (model === undefined) throw notFound(name);
  if (model.kind !== kind) {
    throw new AppError(
      "INVALID_ARGUMENT",
      `The model "${name}" is ${article(model.kind)} model and cannot serve ${article(kind)} request`,
      { param: "model", reason: "model_kind_mismatch", retryable: false },
    );
  }
  return { requested: name, model, candidates: chain(model, byId, kind, []), tier: undefined };
}

/**
 * The candidates of an `auto` pick made elsewhere (complexity routing): `pick`, its fallbacks, then the other
 * members of `tier` of the same kind, as `resolveModel` orders them for `auto:<tier>`.
 */
export function tierCandidates(catalog: Catalog, routes: RouteConfig, tier: string, pick: ModelEntry): ModelEntry[] {
  const byId = new Map(catalog.models.map((m) => [m.id, m]));
  const members = (routes.tiers.get(tier) ?? [])
    .map((id) => byId.get(id))
    .filter((m): m is ModelEntry => m !== undefined && m.kind === pick.kind);
  return chain(pick, byId, pick.kind, members);
}

function article(kind: ModelKind): string {
  return kind === "chat" ? "a chat" : "an embedding";
}

function chain(first: ModelEntry, byId: Map<string, ModelEntry>, kind: ModelKind, rest: ModelEntry[]): ModelEntry[] {
  const out = new Map<string, ModelEntry>([[first.id, first]]);
  for (const id of first.fallbacks) {
    const m = byId.get(id);
    if (m !== undefined && m.kind === kind && !out.has(id)) out.set(id, m);
  }
  for (const m of rest) if (!out.has(m.id)) out.set(m.id, m);
  return [...out.values()];
}
