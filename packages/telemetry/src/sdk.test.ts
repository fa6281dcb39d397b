import { context, trace } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { describe, expect, it } from "vitest";
import { propagateOnly } from "./sdk.js";

describe("propagateOnly (the sampler when no exporter is configured)", () => {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({
    sampler: propagateOnly,
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
  const tracer = provider.getTracer("test");

  it("records nothing, yet every span has real ids and its children share the trace", () => {
    const parent = tracer.startSpan("parent");
    parent.setAttribute("gen_ai.request.model", "m");
    const child = tracer.startSpan("child", {}, trace.setSpan(context.active(), parent));
    expect(parent.isRecording()).toBe(false);
    expect(trace.isSpanContextValid(parent.spanContext())).toBe(true);
    expect(child.spanContext().traceId).toBe(parent.spanContext().traceId);
    expect(child.spanContext().spanId).not.toBe(parent.spanContext().spanId);
    child.end();
    parent.end();
    expect(exporter.getFinishedSpans()).toHaveLength(0);
  });

  it("propagates the trace id to the next hop (W3C traceparent)", () => {
    const span = tracer.startSpan("request");
    const carrier: Record<string, string> = {};
    new W3CTraceContextPropagator().inject(trace.setSpan(context.active(), span), carrier, {
      set: (c, k, v) => {
        c[k] = v;
      },
    });
    expect(carrier.traceparent).toBe(`00-${span.spanContext().traceId}-${span.spanContext().spanId}-00`);
  });
});
