import {
  type InterceptingCall,
  InterceptingCall as InterceptingCallImpl,
  type Interceptor,
  type Metadata,
  status,
} from "@grpc/grpc-js";
import { context, propagation, SpanKind, trace } from "@opentelemetry/api";
import { rpcMetrics } from "./metrics.js";
import { recordSpanError, tracer } from "./tracing.js";

/** Adapts gRPC metadata to the OpenTelemetry propagator's carrier. */
export const metadataGetter = {
  get: (md: Metadata, key: string) => {
    const v = md.get(key);
    return v.length > 0 ? String(v[0]) : undefined;
  },
  keys: (md: Metadata) => Object.keys(md.getMap()),
};

export function splitMethod(path: string): { service: string; method: string } {
  const i = path.lastIndexOf("/");
  return { service: path.slice(1, i), method: path.slice(i + 1) };
}

const codeNames = Object.fromEntries(Object.entries(status).map(([k, v]) => [v, k])) as Record<number, string>;
/** `status.NOT_FOUND` → "NOT_FOUND". */
export function statusName(code: number): string {
  return codeNames[code] ?? String(code);
}

/** One outgoing gRPC call as traced and measured: its CLIENT span and its rate, latency and status-code metrics. */
export interface ClientCall {
  /** Writes the span's W3C trace context (`traceparent`, `tracestate`) through `set`. */
  inject<C>(carrier: C, set: (carrier: C, key: string, value: string) => void): void;
  /** Ends the span and records the metrics, once, with the call's gRPC status code. */
  finish(code: number): void;
}

/**
 * Starts the span and the clock of an outgoing call of `path` (`/package.Service/Method`), a child of the context
 * active now. The client interceptor uses it for calls of their own; a multiplexed call (one of many on a shared
 * stream, packages/runtime grpc-mux.ts) uses it for each call on the stream, so both look the same in traces and
 * metrics.
 */
export function startClientCall(path: string): ClientCall {
  const { service, method } = splitMethod(path);
  const parent = context.active();
  const span = tracer().startSpan(
    path.slice(1),
    {
      kind: SpanKind.CLIENT,
      attributes: { "rpc.system": "grpc", "rpc.service": service, "rpc.method": method },
    },
    parent,
  );
  const started = performance.now();
  let finished = false;
  return {
    inject(carrier, set) {
      propagation.inject(trace.setSpan(parent, span), carrier, { set });
    },
    finish(st) {
      if (finished) return;
      finished = true;
      const code = statusName(st);
      rpcMetrics.clientHandled.inc({ service, method, code });
      rpcMetrics.clientDuration.observe({ service, method, code }, (performance.now() - started) / 1000);
      span.setAttribute("rpc.grpc.status_code", st);
      if (st !== status.OK) recordSpanError(span, { code, name: code });
      span.end();
    },
  };
}

/**
 * A client interceptor for every outgoing gRPC call: a CLIENT span (rpc.* attributes) whose context is injected as
 * W3C `traceparent` metadata, and rate, latency and status-code metrics. The span's parent is the context active
 * when the call is made.
 */
export const clientInterceptor: Interceptor = (options, nextCall): InterceptingCall => {
  const call = startClientCall(options.method_definition.path);
  return new InterceptingCallImpl(nextCall(options), {
    start(metadata, _listener, next) {
      call.inject(metadata, (md: Metadata, k, v) => md.set(k, v));
      // A partial listener: grpc-js fills in the rest and passes `nextStatus` to this one.
      next(metadata, {
        onReceiveStatus(st, nextStatus) {
          call.finish(st.code);
          nextStatus(st);
        },
      });
    },
  });
};
