/**
 * Starts OpenTelemetry before any app code is imported: `node --import @tokenmesh/telemetry/register dist/main.js`.
 *
 * - The ESM loader hook of import-in-the-middle is registered first, so ESM imports are patchable.
 * - service.name is `OTEL_SERVICE_NAME`, else `tokenmesh-<service>` from the nearest package.json of the entry file.
 * - Spans are exported over OTLP only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or the traces-specific variable) is set,
 *   with the protocol of `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf` default, `http/json`, `grpc`), all read by
 *   the SDK itself. Without an endpoint, spans are still created (ids propagate and reach logs and events) but not
 *   exported. `OTEL_SDK_DISABLED=true` turns everything off.
 */
import { register } from "node:module";
import { startTelemetry } from "./sdk.js";

register("@opentelemetry/instrumentation/hook.mjs", import.meta.url);
await startTelemetry();
