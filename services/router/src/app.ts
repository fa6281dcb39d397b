import { type App, type AppDeps, ServiceHost, ShutdownPhase } from "@tokenmesh/runtime";
import { Redis } from "ioredis";
import type { RouterConfig } from "./config.js";

/** Wires the router: Redis (cache, breaker state), the gRPC server and the ops port. */
export function createApp(config: RouterConfig, deps: AppDeps): App & { host: ServiceHost } {
  const { logger, lifecycle } = deps;
  const redis = new Redis(config.REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 2 });
  redis.on("error", (err) => logger.warn({ err: err.message }, "redis error"));
  const host = new ServiceHost({
    logger,
    lifecycle,
    grpc: { host: config.ROUTER_HOST, port: config.ROUTER_GRPC_PORT },
    ops: { host: config.ROUTER_HOST, port: config.ROUTER_OPS_PORT },
    checks: { redis: () => redis.ping() },
  });
  lifecycle.onShutdown("redis: quit", ShutdownPhase.CloseConnections, async () => {
    await redis.quit();
  });
  return {
    host,
    async start() {
      await redis.connect();
      await host.start();
    },
    stop: () => lifecycle.shutdown("stop"),
  };
}
