import { randomBytes } from "node:crypto";
import { credentials } from "@grpc/grpc-js";
import { DeliverPolicy } from "@nats-io/jetstream";
import {
  BudgetThresholdEvent,
  connectNats,
  type Delivery,
  decodeEvent,
  encodeEvent,
  ensureStreams,
  jetstream,
  jetstreamManager,
  type NatsConnection,
  UsageRecordedEvent,
  UsageServedBatchEvent,
} from "@tokenmesh/events";
import { CostServiceClient } from "@tokenmesh/proto/cost/v1/cost";
import { type BudgetThresholdCrossed, UsageRecorded } from "@tokenmesh/proto/events/v1/events";
import { Lifecycle, parseEnv } from "@tokenmesh/runtime";
import { createLogger } from "@tokenmesh/telemetry";
import { afterAll, beforeAll, inject } from "vitest";
import { staticPriceTable } from "../src/adapters/price-table.js";
import type { RecordResult } from "../src/adapters/redis-ledger.js";
import { type CostApp, createApp } from "../src/app.js";
import { CostConfigSchema } from "../src/config.js";

export const logger = createLogger({ service: "cost-test", level: "silent" });

/** Test prices: two models, one with a cached price. */
export const prices = staticPriceTable({
  "m-small": { price: { inputPerMtok: 0.15, outputPerMtok: 0.6, cachedInputPerMtok: 0.075 }, maxOutputTokens: 4096 },
  "m-large": { price: { inputPerMtok: 3, outputPerMtok: 15 }, maxOutputTokens: 8192 },
});

/** A name no other test uses (letters, digits and `_`). */
export function unique(prefix: string): string {
  return `${prefix}_${randomBytes(5).toString("hex")}`;
}

export interface RunningCost {
  app: CostApp;
  client: CostServiceClient;
  stop(): Promise<void>;
}

/** Starts a cost app in this process against the shared test NATS and Redis, isolated by key prefix and durable. */
export async function startCost(options: {
  natsUrl: string;
  redisUrl: string;
  prefix: string;
  durable: string;
  env?: Record<string, string>;
  afterRecord?: AfterRecord;
}): Promise<RunningCost> {
  const config = parseEnv(CostConfigSchema, {
    NATS_URL: options.natsUrl,
    REDIS_URL: options.redisUrl,
    COST_HOST: "127.0.0.1",
    COST_GRPC_PORT: "0",
    COST_OPS_PORT: "0",
    COST_REDIS_PREFIX: options.prefix,
    COST_CONSUMER_NAME: options.durable,
    LOG_LEVEL: "silent",
    ...options.env,
  });
  const lifecycle = new Lifecycle({ logger, deadlineMs: 5_000 });
  const app = createApp(config, {
    logger,
    lifecycle,
    prices,
    ...(options.afterRecord ? { afterRecord: options.afterRecord } : {}),
  });
  await app.start();
  // A plain client: what is under test is the server (and its AppError trailer), not the client interceptors.
  const client = new CostServiceClient(`127.0.0.1:${app.host.grpcPort}`, credentials.createInsecure());
  return {
    app,
    client,
    async stop() {
      client.close();
      await app.stop();
    },
  };
}

/** A publisher of usage events and a reader of budget alerts on the shared NATS server. */
export async function busClient(natsUrl: string) {
  const nc: NatsConnection = await connectNats({ servers: natsUrl, name: "cost-test", logger });
  const jsm = await jetstreamManager(nc);
  await ensureStreams(jsm, ["LLM_USAGE", "LLM_BUDGET", "LLM_DEADLETTER"]);
  const js = jetstream(nc);
  const startedAt = new Date(Date.now() - 1_000).toISOString();
  return {
    nc,
    /** Publishes a usage event; `msgId` defaults to the request id (the gateway's choice). */
    publishUsage(event: UsageRecorded, msgId = event.requestId) {
      return js.publish(UsageRecordedEvent.subject, encodeEvent(UsageRecordedEvent, event), { msgID: msgId });
    },
    /** Publishes a router's batch of served-usage reports (`llm.usage.served.v2`). */
    publishServed(reports: UsageRecorded[], msgId: string, source = "router-test") {
      return js.publish(UsageServedBatchEvent.subject, encodeEvent(UsageServedBatchEvent, { reports, source }), {
        msgID: msgId,
      });
    },
    /** Every alert stored in LLM_BUDGET since this client started, for which `match` holds. */
    async alerts(match: (a: BudgetThresholdCrossed) => boolean): Promise<BudgetThresholdCrossed[]> {
      const consumer = await js.consumers.get(BudgetThresholdEvent.stream, {
        deliver_policy: DeliverPolicy.StartTime,
        opt_start_time: startedAt,
      });
      const found: BudgetThresholdCrossed[] = [];
      for (;;) {
        const batch = await consumer.fetch({ max_messages: 1000, expires: 1_000 });
        let n = 0;
        let caughtUp = false;
        for await (const m of batch) {
          n++;
          const a = decodeEvent(BudgetThresholdEvent, m.data);
          if (match(a)) found.push(a);
          if (m.info.pending === 0) {
            caughtUp = true;
            break;
          }
        }
        if (caughtUp || n === 0) break;
      }
      await consumer.delete().catch(() => undefined);
      return found;
    },
    async close() {
      await nc.drain();
    },
  };
}

/** A cost app's hook after each recorded event (a throw there stands for a crash before the ack). */
export type AfterRecord = (requestId: string, delivery: Delivery, result: RecordResult) => void | Promise<void>;

/** What `useCost` gives a describe block: `bus` and `cost` are set once the block's `beforeAll` has run. */
export interface CostSuite {
  /** Prefixes the block's request ids and names its Redis keys (`<tag>:`). */
  tag: string;
  /** The cost app's durable consumer. */
  durable: string;
  bus: Awaited<ReturnType<typeof busClient>>;
  cost: RunningCost;
}

/**
 * For one describe block: a bus client and a cost app of its own (Redis prefix `<tag>:`, its own durable), started
 * before the block's tests and stopped after them. `afterRecord` builds the app's hook from the block's tag.
 */
export function useCost(name: string, afterRecord?: (tag: string) => AfterRecord): CostSuite {
  const suite = { tag: unique(name), durable: unique(`cost_${name}`) } as CostSuite;
  beforeAll(async () => {
    suite.bus = await busClient(inject("natsUrl"));
    suite.cost = await startCost({
      natsUrl: inject("natsUrl"),
      redisUrl: inject("redisUrl"),
      prefix: `${suite.tag}:`,
      durable: suite.durable,
      ...(afterRecord ? { afterRecord: afterRecord(suite.tag) } : {}),
    });
  });
  afterAll(async () => {
    await suite.cost?.stop();
    await suite.bus?.close();
  });
  return suite;
}

/** A usage event with defaults for the fields a test does not care about. */
export function usage(fields: Partial<UsageRecorded> & { requestId: string }): UsageRecorded {
  return UsageRecorded.fromPartial({
    timestamp: new Date().toISOString(),
    modelRequested: "m-small",
    model: "m-small",
    provider: "test",
    status: "ok",
    latencyMs: 1,
    ttftMs: 1,
    endpoint: "chat",
    ...fields,
  });
}
