import { AckPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { context, propagation, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { UsageRecorded } from "@tokenmesh/proto/events/v1/events";
import { AppError } from "@tokenmesh/runtime";
import { createLogger, registry } from "@tokenmesh/telemetry";
import { startNatsServer, uniqueName, waitFor } from "@tokenmesh/testing";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { pullInBatches } from "../src/batch-pull.js";
import {
  consumeEvents,
  deadLetterSubject,
  decodeEvent,
  EventPublisher,
  type EventType,
  ensureStreams,
  JetStreamAcks,
  type StreamPublish,
  UsageRecordedEvent,
} from "../src/index.js";

const spans = new InMemorySpanExporter();
const logger = createLogger({ service: "events-test", level: "silent" });

beforeAll(() => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }));
});

function usage(requestId: string): UsageRecorded {
  return UsageRecorded.fromPartial({
    requestId,
    timestamp: new Date().toISOString(),
    keyId: "key-1",
    team: "team-a",
    modelRequested: "local-tiny",
    model: "local-tiny",
    provider: "local",
    inputTokens: 10,
    outputTokens: 5,
    status: "ok",
    latencyMs: 12.5,
    ttftMs: 3,
    endpoint: "chat",
  });
}

/** A per-test event type on its own subject and stream, so tests sharing one server don't see each other. */
async function isolatedType(nc: NatsConnection): Promise<EventType<UsageRecorded>> {
  const stream = uniqueName("USAGE").replace(/[^A-Za-z0-9_]/g, "_");
  const subject = `test.${stream}.usage`;
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: stream, subjects: [subject], duplicate_window: 60_000_000_000 });
  return { ...UsageRecordedEvent, subject, stream };
}

describe("events over JetStream", () => {
  let nc: NatsConnection;
  beforeAll(async () => {
    nc = await connect({ servers: inject("natsUrl") });
    await ensureStreams(await jetstreamManager(nc), ["LLM_USAGE", "LLM_DEADLETTER"]);
  });
  afterAll(async () => {
    await nc?.drain();
  });

  it("creates the design's streams idempotently", async () => {
    const jsm = await jetstreamManager(nc);
    await ensureStreams(jsm, ["LLM_USAGE", "LLM_USAGE", "LLM_DEADLETTER"]);
    const info = await jsm.streams.info("LLM_USAGE");
    expect(info.config.subjects).toEqual(["llm.usage.recorded.v1", "llm.usage.served.v1", "llm.usage.served.v2"]);
    expect(info.config.storage).toBe("file");
  });

  it("publishes canonical proto3 JSON with trace context; the consumer span continues the producer's trace", async () => {
    const type = await isolatedType(nc);
    const js = jetstream(nc);
    const publisher = new EventPublisher({ js, logger, name: "test" });
    const producer = trace.getTracer("test").startSpan("produce");
    const producerTraceId = producer.spanContext().traceId;
    await context.with(trace.setSpan(context.active(), producer), () =>
      publisher.publish(type, usage("req-trace-1"), { msgId: "req-trace-1" }),
    );
    producer.end();

    const raw = await (await js.consumers.get(type.stream)).next();
    expect(raw).not.toBeNull();
    const json = JSON.parse(new TextDecoder().decode(raw!.data));
    expect(json.requestId).toBe("req-trace-1");
    expect(json.inputTokens).toBe(10);
    expect(raw!.headers?.get("Nats-Msg-Id")).toBe("req-trace-1");
    expect(raw!.headers?.get("traceparent")).toContain(producerTraceId);

    const seen: { id: string; traceId: string }[] = [];
    const consumer = await consumeEvents({
      js,
      jsm: await jetstreamManager(nc),
      logger,
      type,
      durable: "trace-test",
      handler: async (event) => {
        seen.push({ id: event.requestId, traceId: trace.getActiveSpan()?.spanContext().traceId ?? "" });
      },
    });
    await waitFor(() => seen.length === 1, { timeoutMs: 5_000 });
    await consumer.stop();
    expect(seen[0]).toEqual({ id: "req-trace-1", traceId: producerTraceId });
    const consumerSpan = spans.getFinishedSpans().find((s) => s.name === `${type.subject} process`);
    expect(consumerSpan?.spanContext().traceId).toBe(producerTraceId);
    expect(consumerSpan?.parentSpanContext?.spanId).toBe(producer.spanContext().spanId);
  });

  it("drops a second publish with the same Nats-Msg-Id", async () => {
    const type = await isolatedType(nc);
    const publisher = new EventPublisher({ js: jetstream(nc), logger, name: "test" });
    const first = await publisher.publish(type, usage("dup-1"), { msgId: "dup-1" });
    const second = await publisher.publish(type, usage("dup-1"), { msgId: "dup-1" });
    expect(first.duplicate).toBe(false);
    expect(second.duplicate).toBe(true);
    const info = await (await jetstreamManager(nc)).streams.info(type.stream);
    expect(info.state.messages).toBe(1);
  });

  it.each([
    ["continuous pull", undefined],
    ["batch pulls", 30],
  ])("naks retryable failures for redelivery and dead-letters permanent ones (%s)", async (_mode, batchIntervalMs) => {
    const type = await isolatedType(nc);
    const js = jetstream(nc);
    const publisher = new EventPublisher({ js, logger, name: "test" });
    await publisher.publish(type, usage("retry-me"), { msgId: "retry-me" });
    await publisher.publish(type, usage("poison"), { msgId: "poison" });
    const deliveries: Record<string, number> = {};
    const consumer = await consumeEvents({
      js,
      jsm: await jetstreamManager(nc),
      logger,
      type,
      durable: "retry-test",
      retryDelayMs: () => 50,
      ...(batchIntervalMs === undefined ? {} : { batchIntervalMs, nc }),
      handler: async (event, delivery) => {
        deliveries[event.requestId] = delivery.deliveryCount;
        if (event.requestId === "poison")
          throw new AppError("INVALID_ARGUMENT", "cannot price this", { retryable: false });
        if (delivery.deliveryCount < 3) throw new AppError("UNAVAILABLE", "redis down");
      },
    });
    await waitFor(() => deliveries["retry-me"] === 3 && deliveries.poison === 1, { timeoutMs: 10_000 });
    const dlq = await jetstreamManager(nc);
    await waitFor(
      async () =>
        (await dlq.streams.info("LLM_DEADLETTER", { subjects_filter: ">" })).state.subjects?.[
          deadLetterSubject(type.subject)
        ] === 1,
      { timeoutMs: 5_000 },
    );
    const dead = await dlq.streams.getMessage("LLM_DEADLETTER", { last_by_subj: deadLetterSubject(type.subject) });
    expect(decodeEvent(type, dead!.data).requestId).toBe("poison");
    expect(dead!.header.get("Tokenmesh-Dead-Letter-Reason")).toContain("cannot price this");
    // Not redelivered: the server holds nothing unacknowledged for the consumer (a lost term would show here, and
    // come back after ack_wait), and the handler saw the poison message once.
    await waitFor(
      async () => {
        const info = await dlq.consumers.info(type.stream, "retry-test");
        return info.num_ack_pending === 0 && info.num_pending === 0;
      },
      { timeoutMs: 5_000 },
    );
    expect(deliveries.poison).toBe(1);
    await consumer.stop();
  });

  it("batch pulls: every event once, in a few pulls, and an idle stream is not polled", async () => {
    const type = await isolatedType(nc);
    const js = jetstream(nc);
    const jsm = await jetstreamManager(nc);
    await jsm.consumers.add(type.stream, {
      durable_name: "batch-test",
      ack_policy: AckPolicy.Explicit,
      filter_subject: type.subject,
    });
    const publisher = new EventPublisher({ js, logger, name: "test" });
    const seen = new Map<string, number>();
    const sequences: number[] = [];
    const inFlight = new Set<Promise<void>>();
    const puller = pullInBatches({
      nc,
      apiPrefix: "$JS.API",
      stream: type.stream,
      durable: "batch-test",
      intervalMs: 50,
      room: () => 64 - inFlight.size,
      waitRoom: () => Promise.race(inFlight),
      deliver: (m) => {
        const id = decodeEvent(type, m.data).requestId;
        seen.set(id, (seen.get(id) ?? 0) + 1);
        sequences.push(m.seq);
        expect(m.info.deliveryCount).toBe(1);
        const p: Promise<void> = Promise.resolve()
          .then(() => m.ack())
          .finally(() => inFlight.delete(p));
        inFlight.add(p);
      },
      onError: (err) => {
        throw err;
      },
    });
    try {
      // 300 events over ~0.6 s: a continuous pull would deliver them one by one.
      for (let i = 0; i < 300; i++) {
        void publisher.publish(type, usage(`b-${i}`), { msgId: `b-${i}` });
        // Deliberate pacing of the load, not a wait.
        if (i % 5 === 4) await new Promise((r) => setTimeout(r, 10));
      }
      await waitFor(() => seen.size === 300, { timeoutMs: 10_000 });
      expect([...seen.values()].every((n) => n === 1)).toBe(true);
      expect([...sequences].sort((a, b) => a - b)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
      expect(puller.pulls).toBeLessThan(100);
      await waitFor(
        async () => {
          const info = await jsm.consumers.info(type.stream, "batch-test");
          return info.num_ack_pending === 0 && info.num_pending === 0;
        },
        { timeoutMs: 5_000 },
      );
      // Idle: one blocking pull waits for the next event; nothing polls.
      const before = puller.pulls;
      await new Promise((r) => setTimeout(r, 1_000));
      expect(puller.pulls - before).toBeLessThanOrEqual(2);
      await publisher.publish(type, usage("late"), { msgId: "late" });
      await waitFor(() => seen.has("late"), { timeoutMs: 5_000 });
    } finally {
      await puller.stop();
    }
  });
});

describe("batch pulls, refused", () => {
  it("a pull the server never answers (no such consumer) is reported and retried after a pause, not in a loop", async () => {
    const nc = await connect({ servers: inject("natsUrl") });
    const errors: string[] = [];
    const puller = pullInBatches({
      nc,
      apiPrefix: "$JS.API",
      stream: "LLM_USAGE",
      durable: uniqueName("missing").replace(/[^A-Za-z0-9_-]/g, "_"),
      intervalMs: 20,
      statusGraceMs: 200,
      room: () => 8,
      waitRoom: () => Promise.resolve(),
      deliver: () => undefined,
      onError: (err) => errors.push(err.message),
    });
    try {
      await waitFor(() => errors.length >= 1, { timeoutMs: 5_000 });
      expect(errors[0]).toContain("no answer from the server");
      // Each refusal is followed by a 1 s pause: over 1.5 s, a handful of pulls, not hundreds.
      const before = puller.pulls;
      await new Promise((r) => setTimeout(r, 1_500));
      expect(puller.pulls - before).toBeLessThanOrEqual(3);
    } finally {
      await puller.stop();
      await nc.close();
    }
  });
});

describe("EventPublisher outbox", () => {
  it.each([
    ["JetStreamAcks", (nc: NatsConnection): StreamPublish => new JetStreamAcks(nc)],
    ["the jetstream client", (nc: NatsConnection): StreamPublish => jetstream(nc)],
  ])("loses nothing while NATS restarts: 1,000 events arrive exactly once (%s)", async (_name, client) => {
    const server = await startNatsServer();
    const nc = await connect({ servers: server.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    try {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: "OUTBOX", subjects: ["outbox.usage"], storage: "file" as never });
      const type: EventType<UsageRecorded> = { ...UsageRecordedEvent, subject: "outbox.usage", stream: "OUTBOX" };
      const publisher = new EventPublisher({ js: client(nc), logger, name: "outbox-test", ackTimeoutMs: 500 });
      // The counter is the process's: both cases count on it.
      const outboxRetries = async () =>
        (await registry.getSingleMetric("tokenmesh_events_publish_retries_total")!.get()).values.find(
          (v) => v.labels.subject === "outbox.usage",
        )?.value ?? 0;
      const retriesBefore = await outboxRetries();
      const acks: Promise<unknown>[] = [];
      let restarted: Promise<void> | undefined;
      for (let i = 0; i < 1000; i++) {
        acks.push(publisher.publish(type, usage(`o-${i}`), { msgId: `o-${i}` }));
        if (i === 300) restarted = server.restart();
        // Deliberate pacing of the load, not a wait: spreads the sends so the restart lands among them.
        if (i % 50 === 0) await new Promise((r) => setTimeout(r, 5));
      }
      await restarted;
      await publisher.flush(30_000);
      // The outage was real: some sends failed and were retried.
      expect(await outboxRetries()).toBeGreaterThan(retriesBefore);
      await Promise.all(acks);
      expect(publisher.depth).toBe(0);

      const info = await (await jetstreamManager(nc)).streams.info("OUTBOX");
      expect(info.state.messages).toBe(1000);
      const consumer = await jetstream(nc).consumers.get("OUTBOX");
      const ids = new Set<string>();
      const batch = await consumer.fetch({ max_messages: 1000, expires: 5_000 });
      for await (const m of batch) {
        ids.add(decodeEvent(type, m.data).requestId);
        if (ids.size === 1000) break;
      }
      expect(ids.size).toBe(1000);
    } finally {
      await nc.close();
      await server.stop();
    }
  });

  it("refuses loudly when full instead of dropping silently", async () => {
    const server = await startNatsServer();
    const nc = await connect({ servers: server.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    try {
      const type: EventType<UsageRecorded> = { ...UsageRecordedEvent, subject: "nowhere.usage", stream: "NONE" };
      const publisher = new EventPublisher({
        js: jetstream(nc),
        logger,
        name: "full-test",
        capacity: 5,
        ackTimeoutMs: 200,
      });
      await server.stop();
      for (let i = 0; i < 5; i++) publisher.publish(type, usage(`f-${i}`), { msgId: `f-${i}` });
      expect(() => publisher.publish(type, usage("f-5"), { msgId: "f-5" })).toThrow(/outbox full/);
      expect(publisher.depth).toBe(5);
    } finally {
      await nc.close();
    }
  });
});
