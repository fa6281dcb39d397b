import { counter, histogram } from "@tokenmesh/telemetry";

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
};
