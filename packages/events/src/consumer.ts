import {
  AckPolicy,
  type ConsumerConfig,
  type ConsumerMessages,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
} from "@nats-io/jetstream";
import { type NatsConnection, nanos, headers as natsHeaders } from "@nats-io/transport-node";
import { isAppError } from "@tokenmesh/runtime";
import {
  context,
  counter,
  gauge,
  histogram,
  type Logger,
  propagation,
  recordSpanError,
  SpanKind,
  trace,
  tracer,
} from "@tokenmesh/telemetry";
import { type BatchPuller, type DeliveredMsg, pullInBatches } from "./batch-pull.js";
import { deadLetterSubject, decodeEvent, type EventType } from "./subjects.js";

const metrics = {
  handled: counter("tokenmesh_events_consumed_total", "Events handled, by consumer and outcome", [
    "consumer",
    "outcome",
  ]),
  duration: histogram("tokenmesh_events_handler_duration_seconds", "Event handler latency", ["consumer"]),
  lag: gauge("tokenmesh_events_consumer_pending", "Messages not yet delivered to a durable consumer (lag)", [
    "consumer",
  ]),
  ackPending: gauge("tokenmesh_events_consumer_ack_pending", "Messages delivered and not yet acknowledged", [
    "consumer",
  ]),
};

/** Metadata of a delivered event. */
export interface Delivery {
  subject: string;
  /** 1 on first delivery. */
  deliveryCount: number;
  streamSequence: number;
  msgId: string | undefined;
  /**
   * Tells the server the handler is still at work, restarting the message's ack wait (JetStream's in-progress ack):
   * a handler that may run longer than `ackWaitMs` calls it periodically so the message is not redelivered meanwhile.
   */
  working(): void;
}

export interface ConsumeOptions<T> {
  js: JetStreamClient;
  jsm: JetStreamManager;
  logger: Logger;
  type: EventType<T>;
  /** Durable consumer name, shared by every replica of the consuming service. */
  durable: string;
  handler: (event: T, delivery: Delivery) => Promise<void>;
  /** Deliveries before a message goes to the dead-letter subject. */
  maxDeliver?: number;
  /** Time a handler has before the server redelivers. */
  ackWaitMs?: number;
  /** Messages handled at once by this replica. */
  concurrency?: number;
  /**
   * Delay before redelivery after a retryable failure, by delivery count. An AppError's own `retryAfterMs` (e.g. a
   * rate limit's) takes precedence.
   */
  retryDelayMs?: (deliveryCount: number) => number;
  /**
   * Messages this replica pulls ahead of its handlers (default `max(concurrency * 2, 256)`). Their ack wait runs while
   * they wait here, so consumers with long handlers pull no more than they run.
   */
  prefetch?: number;
  /**
   * Pull in batches (batch-pull.ts) instead of continuously: a partly filled batch waits this long (ms) for the next
   * pull, so a busy consumer and the server wake once per batch instead of once per message. Needs `nc`. Unset or 0:
   * JetStream's continuous pull, each message delivered as it is stored.
   */
  batchIntervalMs?: number;
  /** The connection under `js`, for batch pulls. */
  nc?: NatsConnection;
}

/** A running durable consumer. */
export interface EventConsumer {
  /** Stops pulling, waits for handlers in flight, and returns. Unacked messages are redelivered later. */
  stop(): Promise<void>;
}

const defaultRetryDelay = (n: number) => Math.min(30_000, 200 * 2 ** Math.min(n - 1, 8));

/**
 * Runs a durable pull consumer with explicit acks. Each message is handled in a CONSUMER span whose parent is the
 * producer's span (from the W3C headers), so a trace crosses the bus. Outcomes:
 * - handler resolves → ack;
 * - handler throws a retryable error (an AppError with `retryable`, or any non-AppError) → nak with a delay, until
 *   `maxDeliver` deliveries, then dead-letter;
 * - malformed payload or a non-retryable AppError → dead-letter at once.
 * Dead-lettering republishes the raw message to `llm.deadletter.v1.<subject>` (with its headers and the reason),
 * then terms it.
 */
export async function consumeEvents<T>(options: ConsumeOptions<T>): Promise<EventConsumer> {
  const { js, jsm, logger, type, durable } = options;
  const maxDeliver = options.maxDeliver ?? 10;
  const retryDelay = options.retryDelayMs ?? defaultRetryDelay;
  const config: Partial<ConsumerConfig> = {
    durable_name: durable,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    filter_subject: type.subject,
    max_deliver: maxDeliver + 1,
    ack_wait: nanos(options.ackWaitMs ?? 30_000),
    max_ack_pending: Math.max(1000, (options.concurrency ?? 64) * 4),
  };
  try {
    await jsm.consumers.add(type.stream, config);
  } catch {
    await jsm.consumers.update(type.stream, durable, config);
  }
  const consumer = await js.consumers.get(type.stream, durable);
  const concurrency = options.concurrency ?? 64;
  let messages: ConsumerMessages | undefined;
  let puller: BatchPuller | undefined;
  let stopping = false;
  const inFlight = new Set<Promise<void>>();

  const deadLetter = async (m: DeliveredMsg, reason: string) => {
    const h = m.headers ?? natsHeaders();
    h.set("Tokenmesh-Dead-Letter-Reason", reason.slice(0, 200));
    h.set("Tokenmesh-Dead-Letter-Consumer", durable);
    try {
      await js.publish(deadLetterSubject(m.subject), m.data, {
        headers: h,
        msgID: `${type.stream}:${durable}:${m.seq}`,
      });
      // A bare +TERM: nats-server before 2.10.4 ignores "+TERM <reason>" (the message stayed pending and came back
      // after ack_wait). The reason is in the dead letter's headers.
      m.term();
      metrics.handled.inc({ consumer: durable, outcome: "dead_letter" });
      logger.error({ subject: m.subject, seq: m.seq, reason }, "event dead-lettered");
    } catch (err) {
      // Could not store it in the dead-letter stream: leave it to be redelivered rather than lose it.
      m.nak(retryDelay(m.info.deliveryCount));
      logger.error({ err, seq: m.seq }, "dead-letter publish failed; will retry");
    }
  };

  const handle = async (m: DeliveredMsg) => {
    const parent = propagation.extract(context.active(), m.headers, {
      get: (h, k) => h?.get(k) || undefined,
      keys: (h) => (h ? h.keys() : []),
    });
    const span = tracer().startSpan(
      `${type.subject} process`,
      {
        kind: SpanKind.CONSUMER,
        attributes: {
          "messaging.system": "nats",
          "messaging.operation.type": "process",
          "messaging.destination.name": m.subject,
          "messaging.consumer.group.name": durable,
          "messaging.message.id": m.headers?.get("Nats-Msg-Id") ?? "",
        },
      },
      parent,
    );
    const started = performance.now();
    try {
      let event: T;
      try {
        event = decodeEvent(type, m.data);
      } catch (err) {
        recordSpanError(span, err);
        await deadLetter(m, `malformed payload: ${(err as Error).message}`);
        return;
      }
      const delivery: Delivery = {
        subject: m.subject,
        deliveryCount: m.info.deliveryCount,
        streamSequence: m.seq,
        msgId: m.headers?.get("Nats-Msg-Id") || undefined,
        working: () => m.working(),
      };
      try {
        await context.with(trace.setSpan(parent, span), () => options.handler(event, delivery));
        m.ack();
        metrics.handled.inc({ consumer: durable, outcome: "ack" });
      } catch (err) {
        recordSpanError(span, err);
        const retryable = isAppError(err) ? err.retryable : true;
        if (!retryable || m.info.deliveryCount >= maxDeliver) {
          await deadLetter(m, (err as Error).message ?? String(err));
        } else {
          const after = isAppError(err) && err.retryAfterMs ? err.retryAfterMs : retryDelay(m.info.deliveryCount);
          m.nak(after);
          metrics.handled.inc({ consumer: durable, outcome: "retry" });
          logger.warn({ err, seq: m.seq, delivery: m.info.deliveryCount }, "event handler failed; redelivering later");
        }
      }
    } finally {
      span.end();
      metrics.duration.observe({ consumer: durable }, (performance.now() - started) / 1000);
    }
  };

  const start = (m: DeliveredMsg) => {
    const p = handle(m).finally(() => inFlight.delete(p));
    inFlight.add(p);
  };
  const loop = async () => {
    if (options.batchIntervalMs && options.nc) {
      puller = pullInBatches({
        nc: options.nc,
        apiPrefix: js.getOptions().apiPrefix ?? "$JS.API",
        stream: type.stream,
        durable,
        intervalMs: options.batchIntervalMs,
        room: () => concurrency - inFlight.size,
        waitRoom: () => Promise.race(inFlight),
        deliver: start,
        onError: (err) => logger.warn({ err, durable }, "batch pull failed; resuming"),
      });
      return;
    }
    while (!stopping) {
      try {
        messages = await consumer.consume({ max_messages: options.prefetch ?? Math.max(concurrency * 2, 256) });
        for await (const m of messages) {
          start(m);
          if (inFlight.size >= concurrency) await Promise.race(inFlight);
          if (stopping) break;
        }
      } catch (err) {
        if (stopping) break;
        logger.warn({ err, durable }, "consumer interrupted; resuming");
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  };
  const running = loop();
  const lagTimer = setInterval(() => {
    consumer.info(true).then(
      (info) => {
        metrics.lag.set({ consumer: durable }, info.num_pending);
        metrics.ackPending.set({ consumer: durable }, info.num_ack_pending);
      },
      () => undefined,
    );
  }, 5_000);
  lagTimer.unref();

  return {
    async stop() {
      stopping = true;
      clearInterval(lagTimer);
      await messages?.close();
      await running;
      await puller?.stop();
      await Promise.allSettled([...inFlight]);
    },
  };
}
