import type { LiveCatalog } from "@tokenmesh/catalog";
import {
  connectNats,
  EventPublisher,
  ensureStreams,
  JetStreamAcks,
  jetstreamManager,
  type NatsConnection,
  natsReadiness,
  RedisOutboxJournal,
} from "@tokenmesh/events";
import { RouterServiceService } from "@tokenmesh/proto/router/v1/router";
import { Providers } from "@tokenmesh/providers";
import { type App, type AppDeps, ServiceHost, ShutdownPhase } from "@tokenmesh/runtime";
import { Redis } from "ioredis";
import { catalogSource, type RoutingSnapshot } from "./adapters/catalog.source.js";
import { InferenceClient } from "./adapters/inference.client.js";
import { ModelCaller } from "./adapters/model.caller.js";
import { ModelReadiness, ModelStatusCache } from "./adapters/model-status.js";
import { openSemanticStore, semanticStoreLocation } from "./adapters/postgres-semantic-store.js";
import { RedisCircuitBreaker } from "./adapters/redis-breaker.js";
import { RedisLatencyStats } from "./adapters/redis-latency-stats.js";
import { RedisResponseCache } from "./adapters/redis-response-cache.js";
import { RedisUpgradeStore } from "./adapters/redis-upgrade-store.js";
import { type Embedder, SemanticCache } from "./adapters/semantic-cache.js";
import { type RouterConfig, readSecret } from "./config.js";
import { JetStreamServedUsage } from "./events/usage-served.publisher.js";
import { routerHandlers } from "./grpc/router.handlers.js";
import { routerMetrics } from "./metrics.js";

/**
 * A batch of served-usage reports is journaled in Redis as it is handed to the outbox (no delay): the router is the
 * only reporter of a request whose gateway died, so its report must survive the router's own death once published.
 */
const JOURNAL_AFTER_MS = 0;
/** Journal records older than this are treated as orphaned and published again (duplicates are dropped). */
const RECOVER_AFTER_MS = 30_000;

/** The router app; `host` exposes the bound ports, `breaker`, `cache` and `catalog` are there for tests and ops. */
export interface RouterApp extends App {
  host: ServiceHost;
  catalog: LiveCatalog<RoutingSnapshot>;
  breaker: RedisCircuitBreaker;
  cache: RedisResponseCache;
  /** The semantic cache (pgvector); its store opens on first use, or at start when the catalog enables it. */
  semantic: SemanticCache;
  latency: RedisLatencyStats;
}

/**
 * Wires the router: the catalog (reloaded on change), Redis (breaker state, exact cache), the remote providers
 * (in-process, keys read from the env vars the catalog names), the inference client for local models, the gRPC
 * server and the ops port. Nothing touches the network or disk until `start`.
 */
/** What a test may replace in the router's wiring. */
export interface RouterAppOptions {
  /** The semantic cache's clock for entry creation and expiry (Unix ms). */
  now?: () => number;
}

export function createApp(config: RouterConfig, deps: AppDeps, options: RouterAppOptions = {}): RouterApp {
  const { logger, lifecycle } = deps;
  const redis = new Redis(config.REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 2, enableAutoPipelining: true });
  redis.on("error", (err) => logger.warn({ err: err.message }, "redis error"));
  const catalog = catalogSource(config.MESH_CONFIG, logger.child({ component: "catalog" }));
  const providers = new Providers({
    getSecret: readSecret,
    http: {
      connectionsPerOrigin: config.ROUTER_UPSTREAM_CONNECTIONS,
      keepAliveTimeoutMs: config.ROUTER_UPSTREAM_KEEPALIVE_MS,
      connectTimeoutMs: config.ROUTER_UPSTREAM_CONNECT_TIMEOUT_MS,
      onExchange: (provider, status, seconds) => routerMetrics.upstreamDuration.observe({ provider, status }, seconds),
    },
  });
  const inference = new InferenceClient(config.INFERENCE_ADDR, { streams: config.ROUTER_INFERENCE_STREAMS });
  const models = new ModelCaller(providers, inference);
  const readiness = new ModelReadiness(providers, new ModelStatusCache(() => inference.listModels(1_000), logger));
  const breaker = new RedisCircuitBreaker(
    redis,
    () => catalog.current.routes.breaker,
    logger,
    config.ROUTER_REDIS_PREFIX,
  );
  const cache = new RedisResponseCache(redis, logger.child({ component: "cache" }), {
    prefix: config.ROUTER_REDIS_PREFIX,
  });
  // One embedding call, no retry or fallback: the semantic lookup's time budget has no room for them.
  const embed: Embedder = async (modelId, text, signal) => {
    const entry = catalog.current.models.get(modelId);
    if (entry === undefined) throw new Error(`unknown embedding model "${modelId}"`);
    const response = await models.embed(
      entry,
      { model: modelId, input: [text], user: "" },
      { context: undefined, deadline: undefined, signal },
    );
    const values = response.data[0]?.values;
    if (values === undefined || values.length === 0) throw new Error(`"${modelId}" returned no embedding`);
    return values;
  };
  const semanticLogger = logger.child({ component: "semantic-cache" });
  const semantic = new SemanticCache(
    openSemanticStore(
      semanticStoreLocation(config.ROUTER_SEMANTIC_CACHE_URL),
      { poolSize: config.ROUTER_SEMANTIC_CACHE_POOL_SIZE, connectTimeoutMs: 5_000 },
      semanticLogger,
    ),
    embed,
    semanticLogger,
    options.now ? { now: options.now } : {},
  );
  const host = new ServiceHost({
    logger,
    lifecycle,
    grpc: { host: config.ROUTER_HOST, port: config.ROUTER_GRPC_PORT },
    ops: { host: config.ROUTER_HOST, port: config.ROUTER_OPS_PORT },
    checks: {
      redis: () => redis.ping(),
      nats: () => (nc ? natsReadiness(nc)() : Promise.reject(new Error("not connected"))),
    },
    info: () => ({ models: catalog.current.catalog.models.length }),
  });
  let nc: NatsConnection | undefined;
  let publisher: EventPublisher | undefined;
  const served = new JetStreamServedUsage(() => publisher, logger, {
    flushMs: config.ROUTER_USAGE_FLUSH_MS,
    maxBatch: 256,
  });
  // Time to first token per model, shared through Redis: hedging waits and `auto`'s latency tie-break.
  const latency = new RedisLatencyStats(redis, logger.child({ component: "latency" }), {
    prefix: config.ROUTER_REDIS_PREFIX,
  });
  const upgrades = new RedisUpgradeStore(redis, logger.child({ component: "upgrades" }), {
    prefix: config.ROUTER_REDIS_PREFIX,
  });
  host.grpc?.add(
    RouterServiceService,
    routerHandlers({ catalog, models, readiness, breaker, cache, semantic, served, latency, upgrades, logger }),
  );

  lifecycle.onShutdown("catalog: stop watching", ShutdownPhase.StopIntake, () => catalog.close());
  lifecycle.onShutdown("outbox: stop recovery", ShutdownPhase.StopIntake, () => publisher?.stopRecovery());
  // Speculative slow answers nobody waits for still finish (and report their usage) before events are flushed.
  lifecycle.onShutdown("upgrades: finish slow runs", ShutdownPhase.Drain, () => upgrades.settled());
  lifecycle.onShutdown("latency: last write", ShutdownPhase.FlushEvents, () => latency.stop());
  lifecycle.onShutdown("breaker: stop renewing", ShutdownPhase.FlushEvents, () => breaker.stop());
  lifecycle.onShutdown("events: flush", ShutdownPhase.FlushEvents, () => {
    served.flush();
    return publisher?.flush(Math.max(500, lifecycle.deadlineMs / 2));
  });
  lifecycle.onShutdown("nats: drain", ShutdownPhase.CloseConnections, () => nc?.drain());
  // After the gRPC drain: in-flight streams still need the providers, inference, the breaker and the cache until
  // they end; quit lets the cache writes already sent to Redis finish first.
  lifecycle.onShutdown("providers: close", ShutdownPhase.CloseConnections, () => providers.close());
  lifecycle.onShutdown("inference: close", ShutdownPhase.CloseConnections, () => inference.close());
  lifecycle.onShutdown("redis: quit", ShutdownPhase.CloseConnections, async () => {
    await redis.quit();
  });
  // Lets the answers already recorded reach the store first (the embedding and store calls are bounded).
  lifecycle.onShutdown("semantic cache: close", ShutdownPhase.CloseConnections, () => semantic.close());
  return {
    host,
    catalog,
    breaker,
    cache,
    semantic,
    latency,
    async start() {
      await catalog.start();
      await redis.connect();
      nc = await connectNats({ servers: config.NATS_URL, name: "tokenmesh-router", logger });
      await ensureStreams(await jetstreamManager(nc), ["LLM_USAGE"]);
      publisher = new EventPublisher({
        js: new JetStreamAcks(nc),
        logger,
        name: "router-usage",
        journal: new RedisOutboxJournal(redis, "usage-served"),
        journalAfterMs: JOURNAL_AFTER_MS,
      });
      // Reports a dead replica (or this one, before a restart) accepted but never stored: publish them again.
      await publisher.startRecovery(RECOVER_AFTER_MS);
      latency.start();
      // The schema is created before the first request when the catalog enables the cache (else on first use).
      // An embedded store loads in-process, so start waits for it; a server that is down must not stop the router.
      if (catalog.current.routes.semanticCache.enabled) {
        const warm = semantic.warmUp();
        if (!config.ROUTER_SEMANTIC_CACHE_URL.startsWith("postgres")) await warm;
      }
      semantic.startTrimming();
      await host.start();
    },
    stop: () => lifecycle.shutdown("stop"),
  };
}
