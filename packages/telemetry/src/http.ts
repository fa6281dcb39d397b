import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import {
  type Attributes,
  type Context,
  context,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";
import { tracer } from "./tracing.js";

const headerGetter = {
  get: (h: IncomingHttpHeaders, key: string) => {
    const v = h[key];
    return Array.isArray(v) ? v[0] : v;
  },
  keys: (h: IncomingHttpHeaders) => Object.keys(h),
};

/** The context a request's W3C `traceparent` (and `tracestate`) name as parent; the root context without one. */
export function contextFromHeaders(headers: IncomingHttpHeaders): Context {
  return headers.traceparent === undefined ? ROOT_CONTEXT : propagation.extract(ROOT_CONTEXT, headers, headerGetter);
}

/** Writes the active context (or `ctx`) as W3C `traceparent`/`tracestate` into outgoing HTTP headers. */
export function injectHeaders(headers: Record<string, string>, ctx: Context = context.active()): void {
  propagation.inject(ctx, headers, {
    set: (h, k, v) => {
      h[k] = v;
    },
  });
}

export interface TracedListenerOptions {
  /** Paths (without the query) served without a span: health checks and metrics scrapes. */
  ignorePaths?: ReadonlySet<string>;
}

/**
 * Wraps a `node:http` request listener so that each request runs in a SERVER span: its parent is the client's
 * `traceparent`, when sent; everything the handler starts (routing, gRPC calls, events) is inside it. The span ends
 * when the response is finished or the connection closes, and is marked failed for 5xx answers.
 *
 * This is the part of OpenTelemetry's HTTP instrumentation a server needs. That instrumentation patches
 * `Server.emit` and binds the request and response emitters to the context, and computes a dozen attributes on
 * every request even when the span is not recorded: ~7 % of the gateway's CPU at the max rate. Here attributes are
 * set only on recorded spans, and the handler is called inside the context once.
 */
export function tracedRequestListener(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  options: TracedListenerOptions = {},
): (req: IncomingMessage, res: ServerResponse) => void {
  const ignore = options.ignorePaths;
  return (req, res) => {
    const url = req.url ?? "/";
    if (ignore !== undefined) {
      const q = url.indexOf("?");
      if (ignore.has(q < 0 ? url : url.slice(0, q))) {
        handler(req, res);
        return;
      }
    }
    const parent = contextFromHeaders(req.headers);
    const method = req.method ?? "HTTP";
    const span = tracer().startSpan(method, { kind: SpanKind.SERVER }, parent);
    if (span.isRecording()) {
      const q = url.indexOf("?");
      const attributes: Attributes = {
        "http.request.method": method,
        "url.path": q < 0 ? url : url.slice(0, q),
        "network.protocol.version": req.httpVersion,
      };
      const agent = req.headers["user-agent"];
      if (agent !== undefined) attributes["user_agent.original"] = agent.slice(0, 256);
      span.setAttributes(attributes);
      res.once("close", () => {
        span.setAttribute("http.response.status_code", res.statusCode);
        if (res.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
        else if (!res.writableFinished) span.setStatus({ code: SpanStatusCode.ERROR, message: "connection closed" });
        span.end();
      });
    } else {
      // A span that is not recorded keeps nothing; it only carries ids into the context.
      res.once("close", () => span.end());
    }
    context.with(trace.setSpan(parent, span), handler, undefined, req, res);
  };
}
