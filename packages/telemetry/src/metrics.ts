import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

/**
 * The process's one Prometheus registry. Every metric of every package registers here, so one `/metrics`
 * handler exposes them all.
 */
export const registry = new Registry();
let defaultsCollected = false;

/**
 * How often the event-loop delay histogram samples (ms). prom-client's default, 10 ms, is a timer that wakes every
 * process 100 times a second whether or not it has work: on the 2-vCPU VM of bench/gateway that was 7–8 ms of CPU a
 * second per idle service, and each wake-up of a loaded one lands between requests. 100 ms still gives ten samples
 * a second for the lag percentiles; the `…eventloop_lag_seconds` gauge is measured at scrape time either way.
 */
export const EVENT_LOOP_SAMPLE_MS = 100;

/** Starts Node's default process metrics (CPU, memory, event loop lag) once per process. */
export function collectProcessMetrics(prefix = "tokenmesh_"): void {
  if (defaultsCollected) return;
  defaultsCollected = true;
  collectDefaultMetrics({ register: registry, prefix, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
}

/** Latency buckets in seconds, from 1 ms to 2 min: LLM calls span that range. */
export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
/** Token-count buckets for gen_ai_client_token_usage (the GenAI semantic convention's). */
export const TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304];

type Labels<T extends string> = readonly T[];

/**
 * Returns the counter of that name, creating it on first use. Defining a metric twice (two app instances in one
 * test process) returns the same metric instead of throwing.
 */
export function counter<T extends string>(name: string, help: string, labelNames: Labels<T> = []): Counter<T> {
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Counter<T>;
  return new Counter({ name, help, labelNames: [...labelNames], registers: [registry] });
}

/** Like {@link counter}, for gauges. */
export function gauge<T extends string>(name: string, help: string, labelNames: Labels<T> = []): Gauge<T> {
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Gauge<T>;
  return new Gauge({ name, help, labelNames: [...labelNames], registers: [registry] });
}

/** Like {@link counter}, for histograms (latency buckets by default). */
export function histogram<T extends string>(
  name: string,
  help: string,
  labelNames: Labels<T> = [],
  buckets: number[] = LATENCY_BUCKETS,
): Histogram<T> {
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Histogram<T>;
  return new LabelledHistogram({ name, help, labelNames: [...labelNames], buckets, registers: [registry] });
}

/** What prom-client 15 keeps per label set of a histogram (its `hashMap` values). */
interface HistogramSeries {
  bucketValues: Record<number, number>;
  sum: number;
  count: number;
}

type SeriesTree = Map<unknown, SeriesTree | HistogramSeries>;

/** The members of prom-client's Histogram that {@link LabelledHistogram} reads (not in its types). */
interface HistogramInternals {
  hashMap: Record<string, HistogramSeries>;
  upperBounds: readonly number[];
  sortedLabelNames: readonly string[];
}

/**
 * A prom-client Histogram whose `observe` finds a label set's series through maps keyed by the label values, once
 * the set was observed through prom-client's own path. prom-client's `observe` makes a closure and an object, checks
 * every label and builds its hash string on every call (~1.5 % of the gateway's CPU samples at 1,000 rps, a few
 * observations per request; ~450 against ~170 ns an observation here). Output, validation of a new label set (a set seen before is not checked again: the
 * types keep label names right), `reset`, `zero` and `remove` are prom-client's; the last three forget the maps, so
 * they never point at a series prom-client dropped. (Relies on prom-client 15's
 * `hashMap`, `upperBounds` and `sortedLabelNames`; the telemetry tests compare its output with a plain Histogram's.)
 */
export class LabelledHistogram<T extends string = string> extends Histogram<T> {
  /**
   * Label values, one level per label name (in `labelNames` order), to the series prom-client keeps for them. Set
   * after `super`, whose constructor already calls `reset`.
   */
  declare private series: SeriesTree | undefined;

  constructor(config: ConstructorParameters<typeof Histogram<T>>[0]) {
    super(config);
    const series: SeriesTree = new Map();
    this.series = series;
    if (config.enableExemplars || config.labelNames === undefined || config.labelNames.length === 0) return;
    const names = [...config.labelNames];
    const last = names.length - 1;
    const slow = this.observe.bind(this);
    const internals = this as unknown as HistogramInternals;
    // prom-client sets `observe` on the instance in its constructor: replaced here the same way.
    this.observe = ((labels: Partial<Record<T, string | number>> | number, value?: number): void => {
      if (typeof labels !== "object" || typeof value !== "number" || !Number.isFinite(value)) {
        slow(labels as never, value as never);
        return;
      }
      // One map per label, keyed by its value as given: no string built per call, and no two label sets share a key.
      let node = series;
      for (let i = 0; i < last; i++) {
        const v = labels[names[i] as T];
        let next = node.get(v) as SeriesTree | undefined;
        if (next === undefined) {
          next = new Map();
          node.set(v, next);
        }
        node = next;
      }
      const leaf = labels[names[last] as T];
      const known = node.get(leaf) as HistogramSeries | undefined;
      if (known === undefined) {
        slow(labels as never, value);
        const created = internals.hashMap[hashOf(labels as Record<string, unknown>, internals.sortedLabelNames)];
        if (created !== undefined) node.set(leaf, created);
        return;
      }
      const bounds = internals.upperBounds;
      for (let i = 0; i < bounds.length; i++) {
        const bound = bounds[i]!;
        if (value <= bound) {
          known.bucketValues[bound] = (known.bucketValues[bound] ?? 0) + 1;
          break;
        }
      }
      known.sum += value;
      known.count += 1;
    }) as Histogram<T>["observe"];
  }

  override reset(): void {
    this.series?.clear();
    super.reset();
  }

  override zero(labels: Partial<Record<T, string | number>>): void {
    this.series?.clear();
    super.zero(labels);
  }

  override remove(...values: string[]): void;
  override remove(labels: Partial<Record<T, string | number>>): void;
  override remove(...args: unknown[]): void {
    this.series?.clear();
    (super.remove as (...a: unknown[]) => void)(...args);
  }
}

/** prom-client's hash of a label set (util.js `fastHashObject`): `name:value,` for each label set, names sorted. */
function hashOf(labels: Record<string, unknown>, sortedNames: readonly string[]): string {
  let hash = "";
  for (const name of sortedNames) {
    const value = labels[name];
    if (value !== undefined) hash += `${name}:${value},`;
  }
  return hash;
}

/** Metrics shared by every service: gRPC calls in and out, defined once. */
export const rpcMetrics = {
  serverHandled: counter("tokenmesh_rpc_server_handled_total", "gRPC calls handled, by method and status code", [
    "service",
    "method",
    "code",
  ]),
  serverCancelled: counter(
    "tokenmesh_rpc_server_cancelled_total",
    "gRPC calls their client cancelled while the handler was still running, counted when the cancel arrives",
    ["service", "method"],
  ),
  serverDuration: histogram("tokenmesh_rpc_server_duration_seconds", "gRPC handler latency", [
    "service",
    "method",
    "code",
  ]),
  clientHandled: counter("tokenmesh_rpc_client_handled_total", "gRPC calls made, by method and status code", [
    "service",
    "method",
    "code",
  ]),
  clientDuration: histogram("tokenmesh_rpc_client_duration_seconds", "gRPC client call latency", [
    "service",
    "method",
    "code",
  ]),
  clientSharedStreams: gauge(
    "tokenmesh_rpc_client_shared_streams",
    "Long-lived streams open that calls of this method share (multiplexed calls, e.g. the gateway's to the router)",
    ["service", "method"],
  ),
  clientUnsharedCalls: counter(
    "tokenmesh_rpc_client_unshared_calls_total",
    "Calls that would have shared a stream but went as calls of their own: the server does not serve the " +
      "multiplexed method (an older release)",
    ["service", "method"],
  ),
};

/** GenAI semantic-convention histograms, shared by the services that observe model calls. */
export const genAiMetrics = {
  tokenUsage: histogram(
    "gen_ai_client_token_usage",
    "Tokens used per model call (gen_ai.client.token.usage)",
    ["gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "gen_ai_token_type"],
    TOKEN_BUCKETS,
  ),
  timeToFirstToken: histogram(
    "gen_ai_server_time_to_first_token_seconds",
    "Time to the first generated token (gen_ai.server.time_to_first_token)",
    ["gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model"],
  ),
  operationDuration: histogram(
    "gen_ai_client_operation_duration_seconds",
    "Duration of a model call (gen_ai.client.operation.duration)",
    ["gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "error_type"],
  ),
};
