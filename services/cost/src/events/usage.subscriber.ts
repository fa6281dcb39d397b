import {
  consumeEvents,
  type Delivery,
  type EventConsumer,
  type EventPublisher,
  type EventType,
  type JetStreamClient,
  type JetStreamManager,
  type NatsConnection,
  UsageRecordedEvent,
  UsageServedBatchEvent,
} from "@tokenmesh/events";
import type { UsageRecorded } from "@tokenmesh/proto/events/v1/events";
import type { Logger } from "@tokenmesh/telemetry";
import type { PriceTable } from "../adapters/price-table.js";
import type { RecordResult, RedisLedger } from "../adapters/redis-ledger.js";
import { nanoToUsd } from "../domain/pricing.js";
import { toLedgerEntry } from "../domain/usage.js";
import { costMetrics } from "../metrics.js";
import { publishAlerts } from "./alert.publisher.js";

export interface UsageSubscriberOptions {
  js: JetStreamClient;
  jsm: JetStreamManager;
  logger: Logger;
  ledger: RedisLedger;
  prices: PriceTable;
  publisher: EventPublisher;
  /** Durable consumer name, shared by every cost replica (`cost-ledger`). */
  durable: string;
  /** The usage subject to consume: the gateway's `llm.usage.recorded.v1` (default) or `llm.usage.served.v1` (single reports). */
  type?: EventType<UsageRecorded>;
  /** Events handled at once by this replica; they are recorded in batches. */
  concurrency: number;
  /**
   * With `nc`: pull events in batches, a partly filled batch waiting this long (ms) for the next pull, so that cost
   * and NATS wake once per batch rather than once per event (`COST_CONSUMER_PULL_MS`). 0: each event as it is stored.
   */
  pullIntervalMs?: number;
  nc?: NatsConnection;
  /**
   * Runs after an event is recorded and before its alerts are published and it is acknowledged. A throw here
   * behaves like a crash at that point (the event is redelivered); tests use it to force redeliveries.
   */
  afterRecord?: (requestId: string, delivery: Delivery, result: RecordResult) => void | Promise<void>;
}

/**
 * Consumes `llm.usage.recorded.v1` (or the router's `llm.usage.served.v1`) with a durable consumer and records each
 * request in the ledger exactly once, publishing the budget alerts it raises exactly once. Both subjects report the
 * same requests: the ledger bills a request once, at the larger of its reports (ledger.scripts.ts).
 *
 * Why exactly once, whatever fails where:
 * 1. JetStream delivers every stored event at least once (durable consumer, explicit ack); an event is acked
 *    only after step 3 below, so a crash at any point before leads to a redelivery, never to a loss.
 * 2. Recording is one Lua script guarded by `SET seen:<requestId> NX`: the usage totals, spent counters,
 *    reservation settlement and threshold marks are written together or not at all, and a redelivered or
 *    duplicated event (same request id, even with another stream sequence or on another replica) adds nothing.
 *    The seen mark outlives the stream's max age, so no stored event can be counted twice.
 * 3. Each threshold is marked inside that script with `SET alert:<budget>:<period>:<t> NX`, so exactly one
 *    event (hence one replica) raises it. The script also stores the alerts under `alerts:<requestId>`, and a
 *    re-run for a seen request returns them, so a crash between the script and the publish is repaired by the
 *    redelivery. Alerts are published with Nats-Msg-Id = the alert key, so JetStream drops the re-publishes of
 *    that repair (and of two replicas handling duplicates of one request at once); once published and stored
 *    they are cleared from Redis, then the usage event is acked.
 * The one remaining duplicate: a crash after the alert is stored but before it is cleared, whose redelivery
 * comes after the budget stream's duplicate window (10 min) — i.e. every cost replica down that long.
 */
export function startUsageSubscriber(options: UsageSubscriberOptions): Promise<EventConsumer> {
  const record = reportRecorder(options);
  return consumeEvents({
    js: options.js,
    jsm: options.jsm,
    logger: options.logger,
    type: options.type ?? UsageRecordedEvent,
    durable: options.durable,
    concurrency: options.concurrency,
    ...batching(options),
    handler: (event, delivery) => record(event, delivery, `seq:${delivery.streamSequence}`),
  });
}

/**
 * Consumes the routers' batches of served-usage reports (`llm.usage.served.v2`): each report is recorded as the
 * single reports are (exactly once per request, at the largest report), and the batch is acknowledged once every
 * report in it is; a crash midway redelivers the batch, whose recorded reports then add nothing.
 */
export function startServedBatchSubscriber(options: Omit<UsageSubscriberOptions, "type">): Promise<EventConsumer> {
  const record = reportRecorder(options);
  return consumeEvents({
    js: options.js,
    jsm: options.jsm,
    logger: options.logger,
    type: UsageServedBatchEvent,
    durable: options.durable,
    concurrency: options.concurrency,
    ...batching(options),
    handler: async (batch, delivery) => {
      // Every report is taken as far as it goes before the batch is settled, so a redelivery repeats no work in flight.
      const results = await Promise.allSettled(
        batch.reports.map((report, i) => record(report, delivery, `seq:${delivery.streamSequence}:${i}`)),
      );
      const failed = results.find((r) => r.status === "rejected");
      if (failed !== undefined) throw failed.reason;
    },
  });
}

function batching(options: Omit<UsageSubscriberOptions, "type">): { batchIntervalMs?: number; nc?: NatsConnection } {
  return options.nc && options.pullIntervalMs ? { batchIntervalMs: options.pullIntervalMs, nc: options.nc } : {};
}

/** Records one usage report in the ledger, then publishes the budget alerts it raised (see above). */
function reportRecorder(
  options: Omit<UsageSubscriberOptions, "type">,
): (event: UsageRecorded, delivery: Delivery, fallbackRequestId: string) => Promise<void> {
  const { ledger, prices, publisher, logger } = options;
  return async (event, delivery, fallbackRequestId) => {
    const now = new Date();
    const served = event.model || event.modelRequested;
    const pricing = served ? prices.lookup(served) : undefined;
    if (served && !pricing && !event.cacheHit) costMetrics.unknownModel.inc({ model: served });
    const entry = toLedgerEntry(event, pricing?.price, fallbackRequestId, now);
    const result = await ledger.record(entry);
    if (result.duplicate) {
      costMetrics.events.inc({ outcome: "duplicate" });
    } else {
      costMetrics.events.inc({ outcome: "recorded" });
      if (entry.costNano > 0)
        costMetrics.costUsd.inc({ model: entry.model, team: entry.team }, nanoToUsd(entry.costNano));
    }
    await options.afterRecord?.(entry.requestId, delivery, result);
    if (result.alerts.length > 0) {
      await publishAlerts(publisher, result.alerts, now);
      await ledger.clearAlerts(entry.requestId);
      for (const a of result.alerts) {
        logger.info(
          {
            scope: a.scope,
            id: a.id,
            period: a.period,
            period_key: a.periodKey,
            threshold: a.threshold,
            request_id: entry.requestId,
          },
          "budget threshold crossed",
        );
      }
    }
  };
}
