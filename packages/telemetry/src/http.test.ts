import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { context, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { NodeSDK, tracing } from "@opentelemetry/sdk-node";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { injectHeaders, tracedRequestListener } from "./http.js";
import { tracer } from "./tracing.js";

// The real SDK as the services start it (context manager, W3C propagator), with spans kept in memory.
const exporter = new tracing.InMemorySpanExporter();
const sdk = new NodeSDK({ spanProcessors: [new tracing.SimpleSpanProcessor(exporter)] });
let server: Server;
let port = 0;
/** What the handler saw as the active span, per request path. */
const seen = new Map<string, { traceId: string; spanId: string } | undefined>();

beforeAll(async () => {
  sdk.start();
  server = createServer(
    tracedRequestListener(
      (req, res) => {
        const sc = trace.getActiveSpan()?.spanContext();
        seen.set(req.url ?? "", sc && { traceId: sc.traceId, spanId: sc.spanId });
        if (req.url === "/hang") return void res.flushHeaders();
        // Work the handler starts later still runs in the request's context.
        setImmediate(() => {
          res.statusCode = req.url === "/fail" ? 503 : 200;
          res.end("ok");
        });
      },
      { ignorePaths: new Set(["/healthz"]) },
    ),
  );
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  port = (server.address() as AddressInfo).port;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await sdk.shutdown();
});
beforeEach(() => {
  exporter.reset();
  seen.clear();
});

function get(path: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ port, host: "127.0.0.1", path, headers }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", reject);
    req.end();
  });
}

async function endedSpans(n: number) {
  for (let i = 0; i < 100 && exporter.getFinishedSpans().length < n; i++) await new Promise((r) => setTimeout(r, 10));
  return exporter.getFinishedSpans();
}

describe("tracedRequestListener", () => {
  it("runs the handler in a SERVER span parented by the client's traceparent", async () => {
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const parentId = "00f067aa0ba902b7";
    expect(await get("/v1/chat?x=1", { traceparent: `00-${traceId}-${parentId}-01`, "user-agent": "t" })).toBe(200);
    const [span] = await endedSpans(1);
    expect(span?.kind).toBe(SpanKind.SERVER);
    expect(span?.spanContext().traceId).toBe(traceId);
    expect(span?.parentSpanContext?.spanId).toBe(parentId);
    expect(seen.get("/v1/chat?x=1")).toEqual({ traceId, spanId: span?.spanContext().spanId });
    expect(span?.attributes).toMatchObject({
      "http.request.method": "GET",
      "url.path": "/v1/chat",
      "http.response.status_code": 200,
      "user_agent.original": "t",
    });
    expect(span?.status.code).toBe(SpanStatusCode.UNSET);
  });

  it("starts a new trace without a traceparent, and marks 5xx answers failed", async () => {
    expect(await get("/fail")).toBe(503);
    const [span] = await endedSpans(1);
    expect(span?.parentSpanContext).toBeUndefined();
    expect(seen.get("/fail")?.traceId).toBe(span?.spanContext().traceId);
    expect(span?.status.code).toBe(SpanStatusCode.ERROR);
  });

  it("ignores a malformed traceparent (a new trace, not the client's bytes)", async () => {
    expect(await get("/bad", { traceparent: "00-zz-yy-01" })).toBe(200);
    const [span] = await endedSpans(1);
    expect(span?.parentSpanContext).toBeUndefined();
    expect(span?.spanContext().traceId).toMatch(/^[0-9a-f]{32}$/);
  });

  it("serves ignored paths without a span", async () => {
    expect(await get("/healthz?probe=1")).toBe(200);
    expect(seen.get("/healthz?probe=1")).toBeUndefined();
    // A traced request after it: once its span has ended, it is the only one.
    expect(await get("/after")).toBe(200);
    const spans = await endedSpans(1);
    expect(spans.map((s) => s.attributes["url.path"])).toEqual(["/after"]);
  });

  it("ends the span, failed, when the client goes away before the answer", async () => {
    await new Promise<void>((resolve) => {
      const req = request({ port, host: "127.0.0.1", path: "/hang" }, () => {
        req.destroy();
        resolve();
      });
      req.on("error", () => {});
      req.end();
    });
    const [span] = await endedSpans(1);
    expect(span?.status).toMatchObject({ code: SpanStatusCode.ERROR, message: "connection closed" });
  });
});

describe("injectHeaders", () => {
  it("writes the active span as W3C traceparent into outgoing headers", () => {
    const span = tracer().startSpan("call");
    const headers: Record<string, string> = { accept: "application/json" };
    context.with(trace.setSpan(context.active(), span), () => injectHeaders(headers));
    span.end();
    const { traceId, spanId } = span.spanContext();
    expect(headers.traceparent).toBe(`00-${traceId}-${spanId}-01`);
    expect(headers.accept).toBe("application/json");
  });
});
