import { counter, gauge, histogram } from "@tokenmesh/telemetry";

/** The gateway's own metrics, defined once. */
export const metrics = {
  requests: counter(
    "tokenmesh_gateway_requests_total",
    "Requests answered, by API, endpoint and HTTP status (or gRPC code)",
    ["api", "endpoint", "status"],
  ),
  duration: histogram("tokenmesh_gateway_request_duration_seconds", "Time to the end of the response", [
    "api",
    "endpoint",
  ]),
  rateLimited: counter("tokenmesh_gateway_rate_limited_total", "Requests refused by a key's rate limit", ["limit"]),
  guardDecisions: counter(
    "tokenmesh_gateway_guard_decisions_total",
    "Guard decisions: stage input or output; tier deterministic (in-process) or deep (guard service); action allow, redact or block; mode block (enforced) or shadow",
    ["stage", "tier", "action", "mode"],
  ),
  guardRuleHits: counter("tokenmesh_gateway_guard_rule_hits_total", "Guard rule matches by rule id, both tiers", [
    "rule",
  ]),
  guardCheckDuration: histogram(
    "tokenmesh_gateway_guard_check_duration_seconds",
    "Time of one guard check: the in-process input rules, or one deep-tier call to the guard service",
    ["stage", "tier"],
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1, 2.5, 5],
  ),
  jwksFetches: counter("tokenmesh_gateway_jwks_fetches_total", "JWKS fetches for JWT sign-in, by outcome ok or error", [
    "outcome",
  ]),
  queueDepth: gauge(
    "tokenmesh_gateway_queue_depth",
    "Requests of this replica waiting for a concurrency slot (key, team or model limit), by model and priority class; sum over replicas for the queue",
    ["model", "class"],
  ),
  queueWait: histogram(
    "tokenmesh_gateway_queue_wait_seconds",
    "Time requests waited for concurrency slots, by model, priority class and outcome (granted, timeout, refused, cancelled, lost, error)",
    ["model", "class", "outcome"],
    [0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
  ),
  concurrencyRefused: counter(
    "tokenmesh_gateway_concurrency_refused_total",
    "Requests refused 429 by a concurrency limit (queue full or wait ran out), by limit kind key, team or model",
    ["limit"],
  ),
  auditEvents: counter(
    "tokenmesh_gateway_audit_events_total",
    "Audit events of admin changes, by action and publish outcome ok or error",
    ["action", "outcome"],
  ),
};
