import { RouterServiceService } from "@tokenmesh/proto/router/v1/router";
import { type App, type AppDeps, ServiceHost, ShutdownPhase } from "@tokenmesh/runtime";
import { Redis } from "ioredis";
import { CatalogSource } from "./adapters/catalog.source.js";
import { InferenceClient } from "./adapters/inference.client.js";
import { ModelStatusCache } from "./adapters/model-status.js";
import { RedisCircuitBreaker } from "./adapters/redis-breaker.js";
import { RedisResponseCache } from "./adapters/redis-response-cache.js";
import type { RouterConfig } from "./config.js";
import { routerHandlers } from "./grpc/router.handlers.js";

/** The router app; `host` exposes the bound ports, `breaker`, `cache` and `catalog` are there for tests and ops. */
export interface RouterApp extends App {
  host: ServiceHost;
  catalog: CatalogSource;
  breaker: RedisCircuitBreaker;
  cache: RedisResponseCache;
}

/**
 * Wires the router: the catalog (reloaded on change), Redis (breaker state, exact cache), the inference client, the gRPC
 * server and the ops port. Nothing touches the network or disk until `start`.
 */
export function createApp(config: RouterConfig, deps: AppDeps): RouterApp {
  const { logger, lifecycle } = deps;
  const redis = new Redis(config.REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 2, enableAutoPipelining: true });
  redis.on("error", (err) => logger.warn({ err: err.message }, "redis error"));
  const catalog = new CatalogSource(config.MESH_CONFIG, logger.child({ component: "catalog" }));
  const inference = new InferenceClient(config.INFERENCE_ADDR);
  const status = new ModelStatusCache(() => inference.listModels(1_000), logger);
  const breaker = new RedisCircuitBreaker(
    redis,
    () => catalog.snapshot.routes.breaker,
    logger,
    config.ROUTER_REDIS_PREFIX,
  );
  const cache = new RedisResponseCache(redis, logger.child({ component: "cache" }), {
    prefix: config.ROUTER_REDIS_PREFIX,
  });
  const host = new ServiceHost({
    logger,
    lifecycle,
    grpc: { host: config.ROUTER_HOST, port: config.ROUTER_GRPC_PORT },
    ops: { host: config.ROUTER_HOST, port: config.ROUTER_OPS_PORT },
    checks: { redis: () => redis.ping() },
    info: () => ({ models: catalog.snapshot.catalog.models.length }),
  });
  host.grpc?.add(RouterServiceService, routerHandlers({ catalog, inference, status, breaker, cache, logger }));

  lifecycle.onShutdown("catalog: stop watching", ShutdownPhase.StopIntake, () => catalog.close());
  // After the gRPC drain: in-flight streams still need inference, the breaker and the cache until they end; quit
  // lets the cache writes already sent to Redis finish first.
  lifecycle.onShutdown("inference: close", ShutdownPhase.CloseConnections, () => inference.close());
  lifecycle.onShutdown("redis: quit", ShutdownPhase.CloseConnections, async () => {
    await redis.quit();
  });
  return {
    host,
    catalog,
    breaker,
    cache,
    async start() {
      await catalog.load();
      catalog.watch();
      await redis.connect();
      await host.start();
    },
    stop: () => lifecycle.shutdown("stop"),
  };
}
