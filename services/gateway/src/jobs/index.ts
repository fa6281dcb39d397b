import type { JetStreamClient, JetStreamManager, NatsConnection } from "@tokenmesh/events";
import type { Logger } from "@tokenmesh/telemetry";
import type { Redis } from "ioredis";
import type { GatewayConfig } from "../config.js";
import type { ChatFlow } from "../domain/chat-flow.js";
import { parseAllowList } from "../domain/job-callback.js";
import type { Budgets, CatalogView, Cost, KeyStore, RateLimiter } from "../domain/ports.js";
import { CallbackSender } from "./callbacks.js";
import { JobService } from "./service.js";
import { RedisJobStore } from "./store.js";
import { JobWorker } from "./worker.js";

/** The gateway's async jobs: the API service, the workers and the callback sender, over one Redis job store. */
export interface Jobs {
  service: JobService;
  /** Starts this replica's workers (unless GATEWAY_JOB_WORKERS is 0) and callback sender. */
  start(nc: NatsConnection, js: JetStreamClient, jsm: JetStreamManager): Promise<void>;
  /** Stops pulling jobs and callbacks; running jobs are given back for another replica. */
  stop(): Promise<void>;
}

export function createJobs(
  config: GatewayConfig,
  deps: {
    redis: Redis;
    flow: ChatFlow;
    keys: KeyStore;
    limiter: RateLimiter;
    budgets: Budgets;
    cost: Cost;
    catalog: CatalogView;
    logger: Logger;
  },
): Jobs {
  const logger = deps.logger.child({ component: "jobs" });
  const store = new RedisJobStore(deps.redis, config.GATEWAY_JOB_RETENTION_S);
  const allow = parseAllowList(config.GATEWAY_CALLBACK_ALLOW);
  let nc: NatsConnection | undefined;
  let js: JetStreamClient | undefined;
  const service = new JobService({
    catalog: deps.catalog,
    authenticate: (authorization) => deps.flow.authenticate(authorization),
    limiter: deps.limiter,
    budgets: deps.budgets,
    cost: deps.cost,
    store,
    logger,
    js: () => js,
    nc: () => nc,
    callbackAllow: allow,
    batchMax: config.GATEWAY_JOB_BATCH_MAX,
  });
  const worker =
    config.GATEWAY_JOB_WORKERS > 0
      ? new JobWorker({
          store,
          flow: deps.flow,
          keys: deps.keys,
          logger,
          concurrency: config.GATEWAY_JOB_WORKERS,
          leaseMs: config.GATEWAY_JOB_LEASE_MS,
          maxAttempts: config.GATEWAY_JOB_MAX_ATTEMPTS,
          batchConcurrency: config.GATEWAY_JOB_BATCH_CONCURRENCY,
        })
      : undefined;
  const callbacks = new CallbackSender({
    store,
    logger,
    allow,
    maxAttempts: config.GATEWAY_CALLBACK_MAX_ATTEMPTS,
    backoffMs: config.GATEWAY_CALLBACK_BACKOFF_MS,
    timeoutMs: config.GATEWAY_CALLBACK_TIMEOUT_MS,
  });
  return {
    service,
    async start(conn, jetstream, jsm) {
      nc = conn;
      js = jetstream;
      await worker?.start(conn, jetstream, jsm);
      await callbacks.start(jetstream, jsm);
    },
    async stop() {
      await Promise.all([worker?.stop(), callbacks.stop()]);
    },
  };
}
