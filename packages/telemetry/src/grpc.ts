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

/**
 * A client interceptor for every outgoing gRPC call: a CLIENT span (rpc.* attributes) whose context is injected as
 * W3C `traceparent` metadata, and rate, latency and status-code metrics. The span's parent is the context active
 * when the call is made.
 */
export const clientInterceptor: Interceptor = (options, nextCall): InterceptingCall => {
  const path = options.method_definition.path;
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
  return new InterceptingCallImpl(nextCall(options), {
    start(metadata, _listener, next) {
      propagation.inject(trace.setSpan(parent, span), metadata, { set: (md, k, v) => md.set(k, v) });
      // A partial listener: grpc-js fills in the rest and passes `nextStatus` to this one.
      next(metadata, {
        onReceiveStatus(st, nextStatus) {
          const code = statusName(st.code);
          rpcMetrics.clientHandled.inc({ service, method, code });
          rpcMetrics.clientDuration.observe({ service, method, code }, (performance.now() - started) / 1000);
          span.setAttribute("rpc.grpc.status_code", st.code);
          if (st.code !== status.OK) recordSpanError(span, { code, name: code });
          span.end();
          nextStatus(st);
        },
      });
    },
  });
};
