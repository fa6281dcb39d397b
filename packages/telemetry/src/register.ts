/**
 * Starts OpenTelemetry before any app code runs: `node --import @tokenmesh/telemetry/register dist/main.js`.
 *
 * - service.name is `OTEL_SERVICE_NAME`, else `tokenmesh-<service>` from the nearest package.json of the entry file.
 * - Spans are exported over OTLP only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or the traces-specific variable) is set,
 *   with the protocol of `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf` default, `http/json`, `grpc`), all read by
 *   the SDK itself. Without an endpoint, spans are still created (ids propagate and reach logs and events) but not
 *   recorded. `OTEL_SDK_DISABLED=true` turns everything off.
 * - No module is patched (no loader hook): our own code makes every span (see ./sdk.ts).
 */
import { startTelemetry } from "./sdk.js";

await startTelemetry();
