/**
 * Starts OpenTelemetry before any app code is imported: `node --import @tokenmesh/telemetry/register dist/main.js`.
 *
 * - The ESM loader hook of import-in-the-middle is registered first, limited to the modules the instrumentations
 *   ask for (node:http/https): without the limit it wraps every ESM module in a proxy whose getters then sit on
 *   every call across module boundaries (node-llama-cpp's per-token loop, grpc-js, our own code).
 * - service.name is `OTEL_SERVICE_NAME`, else `tokenmesh-<service>` from the nearest package.json of the entry file.
 * - Spans are exported over OTLP only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or the traces-specific variable) is set,
 *   with the protocol of `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf` default, `http/json`, `grpc`), all read by
 *   the SDK itself. Without an endpoint, spans are still created (ids propagate and reach logs and events) but not
 *   exported. `OTEL_SDK_DISABLED=true` turns everything off.
 */
import { register } from "node:module";
import { createAddHookMessageChannel } from "import-in-the-middle";
import { startTelemetry } from "./sdk.js";

const { registerOptions, waitForAllMessagesAcknowledged } = createAddHookMessageChannel();
register("@opentelemetry/instrumentation/hook.mjs", import.meta.url, registerOptions);
await startTelemetry();
// The instrumentations name their modules over the channel; wait until the loader has them before app code loads.
await waitForAllMessagesAcknowledged();
