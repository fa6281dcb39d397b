import {
  connectNats,
  type Delivery,
  type EventConsumer,
  EventPublisher,
  ensureStreams,
  JetStreamAcks,
  jetstream,
  jetstreamManager,
  type NatsConnection,
  natsReadiness,
  UsageServedEvent,
} from "@tokenmesh/events";
import { CostServiceService } from "@tokenmesh/proto/cost/v1/cost";
import { type App, type AppDeps, ServiceHost, ShutdownPhase } from "@tokenmesh/runtime";
import { Redis } from "ioredis";
import { CatalogPriceTable, type PriceTable } from "./adapters/price-table.js";
import { type RecordResult, RedisLedger } from "./adapters/redis-ledger.js";
import type { CostConfig } from "./config.js";
import { startServedBatchSubscriber, startUsageSubscriber } from "./events/usage.subscriber.js";
import { costHandlers } from "./grpc/cost.handlers.js";
import { costMetrics } from "./metrics.js";

/** What tests and benchmarks may add to the standard app dependencies. */
export interface CostAppDeps extends AppDeps {
  /** Prices to use instead of the catalog file (MESH_CONFIG). */
  prices?: PriceTable;
  /** Called after each usage event is recorded, before its alerts are published and it is acked (fault injection). */
  afterRecord?: (requestId: string, delivery: Delivery, result: RecordResult) => void | Promise<void>;
}

/** The running cost app: the host (its bound ports) and the ledger (for tests). */
export interface CostApp extends App {
  host: ServiceHost;
  ledger: RedisLedger;
}

/** Wires the cost service: NATS (usage in, alerts out), Redis (ledger, budgets), gRPC and the ops port. */
export function createApp(config: CostConfig, deps: CostAppDeps): CostApp {
  const { logger, lifecycle } = deps;
  let nc: NatsConnection | undefined;
  let consumer: EventConsumer | undefined;
  let servedConsumer: EventConsumer | undefined;
  let legacyServedConsumer: EventConsumer | undefined;
  let publisher: EventPublisher | undefined;
  let sweepTimer: NodeJS.Timeout | undefined;
  // Commands issued in the same tick share one round trip: the consumer's handlers run many at once.
  const redis = new Redis(config.REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 2, enableAutoPipelining: true });
  redis.on("error", (err) => logger.warn({ err: err.message }, "redis error"));
  const catalogPrices = deps.prices ? undefined : new CatalogPriceTable(config.MESH_CONFIG, logger);
  const prices: PriceTable = deps.prices ?? (catalogPrices as CatalogPriceTable);
  const ledger = new RedisLedger(redis, {
    prefix: config.COST_REDIS_PREFIX,
    reservationTimeoutMs: config.COST_RESERVATION_TIMEOUT_MS,
    retentionDays: config.COST_LEDGER_RETENTION_DAYS,
    maxBatch: config.COST_RECORD_BATCH,
    lingerMs: config.COST_RECORD_LINGER_MS,
  });
  const host = new ServiceHost({
    logger,
    lifecycle,
    grpc: { host: config.COST_HOST, port: config.COST_GRPC_PORT },
    ops: { host: config.COST_HOST, port: config.COST_OPS_PORT },
    checks: {
      nats: () => (nc ? natsReadiness(nc)() : Promise.reject(new Error("not connected"))),
      redis: () => redis.ping(),
    },
  });

  const sweep = async () => {
    try {
      costMetrics.reservationsHeld.set(await ledger.sweep(new Date()));
    } catch (err) {
      logger.warn({ err: (err as Error).message }, "reservation sweep failed");
    }
  };

  // Stop taking usage events first: handlers in flight finish (and publish their alerts) before the outbox flush.
  lifecycle.onShutdown("usage consumer: stop", ShutdownPhase.StopIntake, async () => {
    clearInterval(sweepTimer);
    catalogPrices?.stop();
    await Promise.all([consumer?.stop(), servedConsumer?.stop(), legacyServedConsumer?.stop()]);
  });
  lifecycle.onShutdown("alerts: flush", ShutdownPhase.FlushEvents, async () => {
    publisher?.close();
    await publisher?.flush(Math.max(100, lifecycle.deadlineMs / 2));
  });
  lifecycle.onShutdown("nats: drain", ShutdownPhase.CloseConnections, () => nc?.drain());
  lifecycle.onShutdown("redis: quit", ShutdownPhase.CloseConnections, async () => {
    await redis.quit();
  });

  return {
    host,
    ledger,
    async start() {
      await catalogPrices?.start();
      await redis.connect();
      nc = await connectNats({ servers: config.NATS_URL, name: "tokenmesh-cost", logger });
      const jsm = await jetstreamManager(nc);
      await ensureStreams(jsm, ["LLM_USAGE", "LLM_BUDGET", "LLM_DEADLETTER"]);
      const js = jetstream(nc);
      publisher = new EventPublisher({ js: new JetStreamAcks(nc), logger, name: "cost-alerts" });
      host.grpc?.add(CostServiceService, costHandlers({ ledger, prices, publisher, logger }));
      consumer = await startUsageSubscriber({
        js,
        jsm,
        logger,
        ledger,
        prices,
        publisher,
        durable: config.COST_CONSUMER_NAME,
        concurrency: config.COST_CONSUMER_CONCURRENCY,
        nc,
        pullIntervalMs: config.COST_CONSUMER_PULL_MS,
        ...(deps.afterRecord ? { afterRecord: deps.afterRecord } : {}),
      });
      // What the routers report providers served: it reaches the ledger even when a gateway's event never comes.
      const shared = {
        js,
        jsm,
        logger,
        ledger,
        prices,
        publisher,
        concurrency: config.COST_CONSUMER_CONCURRENCY,
        nc,
        pullIntervalMs: config.COST_CONSUMER_PULL_MS,
        ...(deps.afterRecord ? { afterRecord: deps.afterRecord } : {}),
      };
      servedConsumer = await startServedBatchSubscriber({
        ...shared,
        durable: `${config.COST_CONSUMER_NAME}-served-batch`,
      });
      // Single reports from routers of earlier releases, still read during (and after) a rolling upgrade.
      legacyServedConsumer = await startUsageSubscriber({
        ...shared,
        type: UsageServedEvent,
        durable: `${config.COST_CONSUMER_NAME}-served`,
      });
      await sweep();
      sweepTimer = setInterval(() => void sweep(), config.COST_SWEEP_INTERVAL_MS);
      sweepTimer.unref();
      await host.start();
    },
    stop: () => lifecycle.shutdown("stop"),
  };
}
