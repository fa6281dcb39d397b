import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { SamplingDecision } from "@opentelemetry/api";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { NodeSDK } from "@opentelemetry/sdk-node";
import type { Sampler, SpanProcessor } from "@opentelemetry/sdk-trace-base";

let sdk: NodeSDK | undefined;

/** A processor that keeps nothing: it makes the SDK register a tracer provider (real ids) without exporting. */
const keepNothing: SpanProcessor = {
  onStart() {},
  onEnd() {},
  forceFlush: () => Promise.resolve(),
  shutdown: () => Promise.resolve(),
};

/** `tokenmesh-<name>` from the package.json nearest to the entry script (`@tokenmesh/router` → `tokenmesh-router`). */
export function serviceNameFromEntry(entry = process.argv[1]): string {
  let dir = entry ? dirname(resolve(entry)) : process.cwd();
  for (let i = 0; i < 6; i++) {
    const pkg = join(dir, "package.json");
    if (existsSync(pkg)) {
      const name = (JSON.parse(readFileSync(pkg, "utf8")) as { name?: string }).name ?? "";
      return name.startsWith("@tokenmesh/") ? `tokenmesh-${name.slice(11)}` : name || "tokenmesh";
    }
    dir = dirname(dir);
  }
  return "tokenmesh";
}

/**
 * With no exporter, spans are not recorded: each still gets real trace and span ids, which propagate over HTTP, gRPC
 * and NATS and reach logs and usage events, but its attributes, events and timing are not built only to be dropped
 * (a recorded span costs allocations and work at every `setAttribute`).
 */
export const propagateOnly: Sampler = {
  shouldSample: () => ({ decision: SamplingDecision.NOT_RECORD }),
  toString: () => "PropagateOnly",
};

/**
 * Starts the OpenTelemetry SDK once per process. Reads only the standard `OTEL_*` variables (this package is the
 * telemetry edge, before any service config exists).
 *
 * No auto-instrumentation is loaded: every span is made by our own code, where the hop is (the gateway's HTTP server
 * with `tracedRequestListener`, gRPC clients and servers in ./grpc.ts and the runtime, provider calls in
 * packages/providers, NATS in packages/events). OpenTelemetry's HTTP and undici instrumentations did the same for
 * the gateway's server and the router's provider calls, at ~7 % of the gateway's CPU (see ./http.ts), and needed an
 * ESM loader hook on node:http.
 */
export async function startTelemetry(): Promise<void> {
  if (sdk || process.env.OTEL_SDK_DISABLED === "true") return;
  const exporting = Boolean(process.env.OTEL_EXPORTER_OTLP_ENDPOINT || process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
  // prom-client serves metrics and pino writes logs; the SDK only does traces.
  process.env.OTEL_METRICS_EXPORTER ??= "none";
  process.env.OTEL_LOGS_EXPORTER ??= "none";
  if (!exporting) process.env.OTEL_TRACES_EXPORTER ??= "none";
  sdk = new NodeSDK({
    resource: resourceFromAttributes({ "service.name": process.env.OTEL_SERVICE_NAME ?? serviceNameFromEntry() }),
    ...(exporting ? {} : { spanProcessors: [keepNothing], sampler: propagateOnly }),
  });
  sdk.start();
}

/** Flushes and stops the SDK (last shutdown step). */
export async function stopTelemetry(): Promise<void> {
  const s = sdk;
  sdk = undefined;
  await s?.shutdown();
}
