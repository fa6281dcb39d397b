import { counter, histogram } from "@tokenmesh/telemetry";

/** The guard's own metrics, defined once (gRPC rate/latency come from the shared server wrapper). */
export const guardMetrics = {
  decisions: counter(
    "tokenmesh_guard_decisions_total",
    "Guard decisions: stage input (one per CheckInput) or output (one per FilterOutput stream); action allow, redact or block",
    ["stage", "action"],
  ),
  ruleHits: counter("tokenmesh_guard_rule_hits_total", "Matches per rule id (input and output)", ["rule"]),
  checkDuration: histogram(
    "tokenmesh_guard_check_duration_seconds",
    "Time to evaluate the input policy for one CheckInput",
    [],
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
  ),
  deepChecks: counter(
    "tokenmesh_guard_deep_checks_total",
    "Deep-tier checks: stage input or output; outcome safe, unsafe, timeout or error; mode block or shadow; action the policy made of it",
    ["stage", "outcome", "mode", "action"],
  ),
  deepDuration: histogram(
    "tokenmesh_guard_deep_check_duration_seconds",
    "Time of one deep-tier check, guard model or moderation call included",
    ["stage"],
    [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  ),
  policyReloads: counter("tokenmesh_guard_policy_reloads_total", "Reloads of the guard policy from the catalog file", [
    "result",
  ]),
};
