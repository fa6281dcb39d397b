import {
  type Attributes,
  type Context,
  context,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";

export { type Attributes, type Context, context, propagation, type Span, SpanKind, SpanStatusCode, trace };

/** The tracer all Tokenmesh code uses; spans carry the service name through the resource. */
export function tracer() {
  return trace.getTracer("tokenmesh");
}

/** A carrier getter/setter pair for plain string maps (gRPC metadata and NATS headers adapt to it). */
export interface Carrier {
  get(key: string): string | undefined;
  set(key: string, value: string): void;
  keys(): string[];
}

/** Writes the W3C `traceparent`/`tracestate` of `ctx` (default: the active context) into the carrier. */
export function injectContext(carrier: Carrier, ctx: Context = context.active()): void {
  propagation.inject(ctx, carrier, {
    set: (c, k, v) => c.set(k, v),
  });
}

/** Reads W3C trace context from the carrier; returns a context whose parent is the remote span, if any. */
export function extractContext(carrier: Carrier, base: Context = ROOT_CONTEXT): Context {
  return propagation.extract(base, carrier, {
    get: (c, k) => c.get(k),
    keys: (c) => c.keys(),
  });
}

/** The active span's ids, or empty strings when none is recording. */
export function currentTraceIds(ctx: Context = context.active()): { traceId: string; spanId: string } {
  const sc = trace.getSpanContext(ctx);
  if (!sc || !trace.isSpanContextValid(sc)) return { traceId: "", spanId: "" };
  return { traceId: sc.traceId, spanId: sc.spanId };
}

/** Marks a span failed with the error's code/name, without recording message text that may hold user data. */
export function recordSpanError(span: Span, err: unknown): void {
  const e = err as { code?: unknown; name?: string; message?: string };
  span.setStatus({ code: SpanStatusCode.ERROR, message: typeof e?.code === "string" ? e.code : e?.name });
  span.setAttribute("error.type", typeof e?.code === "string" ? e.code : (e?.name ?? "Error"));
  if (err instanceof Error) span.recordException({ name: err.name, message: err.message });
}

/**
 * Runs `fn` inside a new active span and ends it when `fn` settles; errors mark the span failed and rethrow.
 */
export async function withSpan<T>(
  name: string,
  options: { attributes?: Attributes; kind?: SpanKind; parent?: Context },
  fn: (span: Span) => Promise<T>,
): Promise<T> {
  const parent = options.parent ?? context.active();
  const span = tracer().startSpan(
    name,
    { kind: options.kind ?? SpanKind.INTERNAL, attributes: options.attributes },
    parent,
  );
  try {
    return await context.with(trace.setSpan(parent, span), () => fn(span));
  } catch (err) {
    recordSpanError(span, err);
    throw err;
  } finally {
    span.end();
  }
}
