import { counter, gauge } from "@tokenmesh/telemetry";

/**
 * The cost service's metrics, defined once. The ledger consumer's lag (messages not yet delivered) and its
 * un-acked messages are exported by the shared consumer as `tokenmesh_events_consumer_pending` and
 * `tokenmesh_events_consumer_ack_pending` with `consumer="cost-ledger"`; handler latency and outcomes as
 * `tokenmesh_events_handler_duration_seconds` / `tokenmesh_events_consumed_total`.
 */
export const costMetrics = {
  costUsd: counter("tokenmesh_cost_usd_total", "Cost recorded in the ledger, in USD, by model and team", [
    "model",
    "team",
  ]),
  events: counter("tokenmesh_cost_usage_events_total", "Usage events handled, by outcome (recorded, duplicate)", [
    "outcome",
  ]),
  unknownModel: counter(
    "tokenmesh_cost_unknown_model_total",
    "Usage events or reservations for a model with no known price (priced at 0)",
    ["model"],
  ),
  alerts: counter("tokenmesh_cost_alerts_published_total", "Budget threshold alerts published, by scope and period", [
    "scope",
    "period",
  ]),
  reservations: counter("tokenmesh_cost_reservations_total", "Reserve calls, by outcome (held, refused, none)", [
    "outcome",
  ]),
  reservationsHeld: gauge("tokenmesh_cost_reservations_held", "Reservation holds in force (as of the last sweep)"),
  released: counter("tokenmesh_cost_reservations_released_total", "Reservations released early by Release calls"),
};
