/**
 * The response headers that carry routing facts to the client, the same on every front door: HTTP headers on
 * /v1/chat/completions and /v1/messages, response metadata on the gRPC GatewayService.
 */
export const ROUTE_REASON_HEADER = "x-tokenmesh-route-reason";
export const UPGRADE_HEADER = "x-tokenmesh-upgrade";
/** Set on answers served from a cache: `exact`, or `semantic;sim=0.97` (the request's similarity to the stored one). */
export const CACHE_HEADER = "x-tokenmesh-cache";

/**
 * Response headers for a routed answer: why the model was chosen, the upgrade's id when there is one, and which
 * cache answered (a semantic hit with its similarity to three decimals; only a perfect match reads as 1).
 */
export function routeHeaders(route: {
  reason: string;
  upgradeId: string;
  cacheKind?: string;
  cacheSimilarity?: number;
}): Record<string, string> {
  const h: Record<string, string> = {};
  if (route.reason) h[ROUTE_REASON_HEADER] = route.reason;
  if (route.upgradeId) h[UPGRADE_HEADER] = route.upgradeId;
  if (route.cacheKind === "semantic") {
    const sim = route.cacheSimilarity ?? 0;
    // Rounded (the router sends a float32: 0.95 arrives as 0.9499999), but short of 1 unless it is 1.
    h[CACHE_HEADER] = `semantic;sim=${Math.min(Math.round(sim * 1000) / 1000, sim < 1 ? 0.999 : 1)}`;
  } else if (route.cacheKind) h[CACHE_HEADER] = route.cacheKind;
  return h;
}
