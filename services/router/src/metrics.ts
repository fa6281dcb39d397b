import { counter, gauge, histogram } from "@tokenmesh/telemetry";
import type { FallbackObserver } from "./domain/fallback.js";

/**
 * The router's own metrics, defined once (gRPC rate/latency/errors come from the shared server wrapper). The
 * router makes every model call, so it also records the per-call metrics: provider latency, tokens, and the GenAI
 * client histograms (see ModelCaller).
 */
export const routerMetrics = {
  attempts: counter("tokenmesh_router_attempts_total", "Model calls tried by the router, by outcome", [
    "model",
    "outcome",
  ]),
  retries: counter("tokenmesh_router_retries_total", "Retries of a model after a retryable failure", ["model"]),
  fallbacks: counter("tokenmesh_router_fallbacks_total", "Moves from a failed model to its next fallback", [
    "from",
    "to",
  ]),
  breakerState: gauge(
    "tokenmesh_router_breaker_state",
    "Circuit breaker state last seen by this replica (0 closed, 1 half-open, 2 open)",
    ["model"],
  ),
  cacheRequests: counter(
    "tokenmesh_router_cache_requests_total",
    "Chat requests seen by the enabled exact cache: hit, miss, or bypass (not eligible, opted out or refreshed)",
    ["result"],
  ),
  cacheStoreFailures: counter(
    "tokenmesh_router_cache_store_failures_total",
    "Complete answers that could not be written to the cache (Redis error or not connected)",
  ),
  cacheLookupFailures: counter(
    "tokenmesh_router_cache_lookup_failures_total",
    "Cache lookups that failed (Redis error, timeout or unreadable entry) and were treated as misses",
  ),
  hedges: counter(
    "tokenmesh_router_hedges_total",
    "Hedged attempts started (no first token in time), by model and target",
    ["model", "to"],
  ),
  hedgeWins: counter("tokenmesh_router_hedge_wins_total", "Hedged attempts that answered first, by model and target", [
    "model",
    "to",
  ]),
  catalogReloads: counter("tokenmesh_router_catalog_reloads_total", "Catalog reloads, by outcome", ["outcome"]),
  upstreamDuration: histogram(
    "tokenmesh_router_upstream_duration_seconds",
    'Provider HTTP exchanges (headers and body), by provider and HTTP status ("error" when no response came)',
    ["provider", "status"],
  ),
  inputTokens: counter("tokenmesh_router_input_tokens_total", "Prompt tokens of the model calls that answered", [
    "model",
    "provider",
  ]),
  outputTokens: counter("tokenmesh_router_output_tokens_total", "Generated tokens of the model calls that answered", [
    "model",
    "provider",
  ]),
  semanticLookups: counter(
    "tokenmesh_router_semantic_cache_lookups_total",
    "Chat requests seen by the enabled semantic cache, by result: hit, miss, error (embedding or store failed, or " +
      "the store is backing off), timeout (over the time budget), bypass (not eligible, opted out or refreshed)",
    ["result"],
  ),
  semanticLookupDuration: histogram(
    "tokenmesh_router_semantic_cache_lookup_duration_seconds",
    "Time a semantic lookup (embedding and nearest-neighbour query) added to a request, by result",
    ["result"],
  ),
  semanticSimilarity: histogram(
    "tokenmesh_router_semantic_cache_similarity_ratio",
    "Cosine similarity of the nearest stored request found by a semantic lookup (hits and misses below the threshold)",
    [],
    [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99, 1],
  ),
  semanticStoreFailures: counter(
    "tokenmesh_router_semantic_cache_store_failures_total",
    "Complete answers the semantic cache could not store (store error or no embedding in time)",
  ),
  semanticEvictions: counter(
    "tokenmesh_router_semantic_cache_evictions_total",
    "Semantic cache entries deleted, by reason: expired (past ttl_s) or size (over max_entries)",
    ["reason"],
  ),
};

/** The `result` label of `tokenmesh_router_cache_requests_total`. */
export type CacheResult = "hit" | "miss" | "bypass";

/** Breaker states as the gauge reports them. */
export const BREAKER_GAUGE = { closed: 0, half_open: 1, open: 2 } as const;

/** Records attempts, retries and fallbacks of one routed request. */
export const metricsObserver: FallbackObserver = {
  attempt: ({ model, outcome }) => routerMetrics.attempts.inc({ model, outcome }),
  retry: ({ model }) => routerMetrics.retries.inc({ model }),
  fallback: ({ from, to }) => routerMetrics.fallbacks.inc({ from, to }),
};
