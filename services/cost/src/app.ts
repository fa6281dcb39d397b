import { connectNats, ensureStreams, jetstreamManager, type NatsConnection, natsReadiness } from "@tokenmesh/events";
import { type App, type AppDeps, ServiceHost, ShutdownPhase } from "@tokenmesh/runtime";
import { Redis } from "ioredis";
import type { CostConfig } from "./config.js";

/** Wires the cost service: NATS (usage in, alerts out), Redis (ledger, budgets), gRPC and the ops port. */
export function createApp(config: CostConfig, deps: AppDeps): App & { host: ServiceHost } {
  const { logger, lifecycle } = deps;
  let nc: NatsConnection | undefined;
  const redis = new Redis(config.REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 2 });
  redis.on("error", (err) => logger.warn({ err: err.message }, "redis error"));
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
  lifecycle.onShutdown("nats: drain", ShutdownPhase.CloseConnections, () => nc?.drain());
  lifecycle.onShutdown("redis: quit", ShutdownPhase.CloseConnections, async () => {
    await redis.quit();
  });
  return {
    host,
    async start() {
      await redis.connect();
      nc = await connectNats({ servers: config.NATS_URL, name: "tokenmesh-cost", logger });
      await ensureStreams(await jetstreamManager(nc), ["LLM_USAGE", "LLM_BUDGET", "LLM_DEADLETTER"]);
      await host.start();
    },
    stop: () => lifecycle.shutdown("stop"),
  };
}
