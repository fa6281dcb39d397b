import type { ModelEntry } from "@tokenmesh/catalog";
import { estimateMessageTokens } from "@tokenmesh/tokens";
import { type ComplexityScore, type ScorableRequest, scoreComplexity, tierForScore } from "./complexity.js";
import type { RouteConfig } from "./routes.js";

/** A caller's routing hint (`x-tokenmesh-route`). */
export type RoutePreference = "cheapest" | "fastest" | "best";

export const ROUTE_PREFERENCES: readonly RoutePreference[] = ["cheapest", "fastest", "best"];

/** Output tokens assumed for the cost comparison when the request sets no `max_tokens`. */
const ASSUMED_OUTPUT_TOKENS = 512;

export interface AutoInput {
  request: ScorableRequest;
  routes: RouteConfig;
  models: ReadonlyMap<string, ModelEntry>;
  isReady(modelId: string): boolean;
  /** A model's recent typical time to first token (ms), undefined when unknown. */
  latencyMs(modelId: string): number | undefined;
  prefer?: RoutePreference | undefined;
}

/** What complexity routing chose, and why. */
export interface AutoChoice {
  tier: string;
  model: ModelEntry;
  /** For the response header, the span and the usage event, e.g. `auto:large score=0.72 signals=code,long`. */
  reason: string;
  score?: ComplexityScore | undefined;
}

/**
 * The tiers in scoring order: the default tier first, then the thresholded tiers by threshold (lowest first).
 * Tiers with neither are not part of complexity routing (still reachable as `auto:<tier>`).
 */
export function tierLadder(routes: RouteConfig): string[] {
  const thresholds = routes.scoring?.thresholds ?? new Map<string, number>();
  const ladder = [...thresholds.entries()].sort((a, b) => a[1] - b[1]).map(([t]) => t);
  if (routes.defaultTier !== undefined && !ladder.includes(routes.defaultTier)) ladder.unshift(routes.defaultTier);
  return ladder;
}

/**
 * Chooses the model for bare `auto` when `routes.auto.scoring` is set (returns undefined otherwise):
 *
 * - No hint: the request's complexity score picks the tier (see {@link scoreComplexity} and `thresholds`).
 *   `best` takes the top tier of the ladder; `cheapest` and `fastest` look across every tier of the ladder.
 * - Within the tier: models whose context window holds the estimated input plus the requested output, ready ones
 *   first; among those the cheapest for this request (estimated input × input price + output × output price),
 *   then the lower recent latency, then catalog preference order. `fastest` orders by latency first.
 * - When no model of the tier can hold the request, the next tier up that has one is taken ("context" in the
 *   reason); when none anywhere can, the tier's first ready member is returned (its own error says why).
 *
 * Pure: the same inputs always give the same choice.
 */
export function chooseAuto(input: AutoInput): AutoChoice | undefined {
  const { routes, request, prefer } = input;
  if (routes.scoring === undefined || routes.defaultTier === undefined) return undefined;
  const ladder = tierLadder(routes);
  const inputTokens = estimateMessageTokens(request.messages);
  const members = (tier: string) =>
    (routes.tiers.get(tier) ?? [])
      .map((id) => input.models.get(id))
      .filter((m): m is ModelEntry => m !== undefined && m.kind === "chat");
  const fits = (m: ModelEntry) =>
    inputTokens + Math.min(request.maxTokens ?? 0, m.max_output_tokens) <= m.context_window;
  const cost = (m: ModelEntry) => {
    const output = Math.min(request.maxTokens ?? ASSUMED_OUTPUT_TOKENS, m.max_output_tokens);
    return inputTokens * m.price.input_per_mtok + output * m.price.output_per_mtok;
  };
  const latency = (m: ModelEntry) => input.latencyMs(m.id) ?? Number.POSITIVE_INFINITY;
  const order = (pool: ModelEntry[], fastestFirst: boolean) => {
    const indexed = pool.map((m, i) => ({ m, i }));
    indexed.sort((a, b) => {
      const ready = Number(input.isReady(b.m.id)) - Number(input.isReady(a.m.id));
      if (ready !== 0) return ready;
      const byCost = cost(a.m) - cost(b.m);
      const byLatency = latency(a.m) - latency(b.m);
      // Infinity - Infinity is NaN: two models without latency figures tie.
      const primary = fastestFirst ? byLatency : byCost;
      const secondary = fastestFirst ? byCost : byLatency;
      if (primary !== 0 && !Number.isNaN(primary)) return primary;
      if (secondary !== 0 && !Number.isNaN(secondary)) return secondary;
      return a.i - b.i;
    });
    return indexed.map((x) => x.m);
  };
  const pickIn = (tiers: string[], fastestFirst: boolean) => {
    const pool = tiers.flatMap((t) => members(t).map((m) => ({ t, m })));
    const seen = new Set<string>();
    const unique = pool.filter((x) => !seen.has(x.m.id) && seen.add(x.m.id));
    const best = order(
      unique.filter((x) => fits(x.m)).map((x) => x.m),
      fastestFirst,
    )[0];
    return best === undefined ? undefined : { tier: unique.find((x) => x.m.id === best.id)?.t as string, model: best };
  };

  if (prefer === "cheapest" || prefer === "fastest") {
    const got = pickIn(ladder, prefer === "fastest");
    if (got !== undefined) return { ...got, reason: `auto:${prefer} tier=${got.tier}` };
  }
  let tier: string;
  let score: ComplexityScore | undefined;
  let why: string;
  if (prefer === "best") {
    tier = ladder.at(-1) as string;
    why = `auto:${tier} prefer=best`;
  } else {
    score = scoreComplexity(request, routes.scoring.weights);
    tier = tierForScore(score.score, routes.scoring.thresholds, routes.defaultTier);
    why = `auto:${tier} score=${score.score.toFixed(2)} signals=${score.signals.join(",") || "none"}`;
  }
  const here = pickIn([tier], false);
  if (here !== undefined) return { ...here, reason: why, score };
  for (const up of ladder.slice(ladder.indexOf(tier) + 1)) {
    const got = pickIn([up], false);
    if (got !== undefined) return { ...got, reason: `${why.replace(`auto:${tier}`, `auto:${up}`)} context`, score };
  }
  const fallback = members(tier).find((m) => input.isReady(m.id)) ?? members(tier)[0];
  if (fallback === undefined) return undefined;
  return { tier, model: fallback, reason: `${why} context=none-fits`, score };
}
