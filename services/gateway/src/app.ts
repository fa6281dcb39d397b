import { createServer } from "node:http";
import { LiveCatalog } from "@tokenmesh/catalog";
import {
  connectNats,
  EventPublisher,
  ensureStreams,
  JetStreamAcks,
  type JetStreamClient,
  jetstream,
  jetstreamManager,
  type NatsConnection,
  natsReadiness,
  RedisOutboxJournal,
} from "@tokenmesh/events";
import { compileGuardSection, type PolicySet, TextCheckMemo } from "@tokenmesh/guard-policy";
import { Period, Scope } from "@tokenmesh/proto/cost/v1/cost";
import type { UsageRecorded } from "@tokenmesh/proto/events/v1/events";
import { GatewayServiceService } from "@tokenmesh/proto/gateway/v1/gateway";
import { type App, type AppDeps, callUnary, ServiceHost, ShutdownPhase } from "@tokenmesh/runtime";
import { trace, tracedRequestListener } from "@tokenmesh/telemetry";
import Fastify, { type FastifyInstance } from "fastify";
import { Redis } from "ioredis";
import { RedisAdminStore } from "./adapters/admin-store.js";
import { JetStreamAuditLog } from "./adapters/audit-log.js";
import { BudgetView } from "./adapters/budget-view.js";
import { GrpcCost } from "./adapters/cost.client.js";
import { InProcessGuard } from "./adapters/guard.in-process.js";
import { guardDecisionSink } from "./adapters/guard-decision.publisher.js";
import { GrpcDeepTier } from "./adapters/guard-deep.client.js";
import { RedisHardScopes } from "./adapters/hard-scopes.js";
import { JoseJwtVerifier } from "./adapters/jwt-verifier.js";
import { RedisKeyStore } from "./adapters/key-store.js";
import { RedisOpenHolds } from "./adapters/open-holds.js";
import { RedisRateLimiter } from "./adapters/rate-limiter.js";
import { RedisConcurrencyLimiter } from "./adapters/redis-concurrency.js";
import { GrpcRouter } from "./adapters/router.client.js";
import { JetStreamUsageSink } from "./adapters/usage.publisher.js";
import type { GatewayConfig } from "./config.js";
import { ChatFlow } from "./domain/chat-flow.js";
import { compileAuthSection } from "./domain/jwt-auth.js";
import { hashSecret } from "./domain/keys.js";
import { correlationId, mintRequestId } from "./domain/request-id.js";
import { gatewayHandlers } from "./grpc/gateway.handlers.js";
import { jobHandlers } from "./grpc/jobs.handlers.js";
import { registerAdminRoutes } from "./http/admin.routes.js";
import { registerAnthropicRoutes } from "./http/anthropic.routes.js";
import { answerClientError, answerFrameworkError, refuseExpectation } from "./http/client-errors.js";
import { registerErrorHandler } from "./http/errors.js";
import { registerJobRoutes } from "./http/jobs.routes.js";
import { registerOpenAIRoutes } from "./http/openai.routes.js";
import { registerOpsRoutes } from "./http/ops.routes.js";
import { registerUpgradeRoutes } from "./http/upgrade.routes.js";
import { createJobs } from "./jobs/index.js";
import { metrics } from "./metrics.js";

/** Served without a trace span: health checks and metrics scrapes (ops.routes.ts). */
const UNTRACED_PATHS: ReadonlySet<string> = new Set(["/healthz", "/readyz", "/metrics"]);

/** Journal records older than this are treated as orphaned and published again (duplicates are dropped). */
const RECOVER_AFTER_MS = 30_000;
const ENDPOINTS: Record<string, string> = {
  "/v1/chat/completions": "chat",
  "/v1/embeddings": "embeddings",
  "/v1/models": "models",
  "/v1/jobs": "jobs",
  "/v1/jobs/batch": "jobs",
  "/v1/jobs/:id": "jobs",
};
const SCOPE_OF: Record<string, Scope> = { key: Scope.SCOPE_KEY, team: Scope.SCOPE_TEAM, user: Scope.SCOPE_USER };

/** Wires the gateway: HTTP (Fastify) and gRPC front doors over one ChatFlow, Redis, NATS and the peers. */
export function createApp(
  config: GatewayConfig,
  deps: AppDeps,
): App & { host: ServiceHost; http: FastifyInstance; readonly httpPort: number } {
  const { logger, lifecycle } = deps;
  let nc: NatsConnection | undefined;
  const catalog = new LiveCatalog({ path: config.MESH_CONFIG, derive: (c) => c, logger });
  const redis = new Redis(config.REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 2, enableAutoPipelining: true });
  redis.on("error", (err) => logger.warn({ err: err.message }, "redis error"));
  // JWT sign-in (`auth.jwt`) reloads with the catalog; the verifier reads the section in force for every token.
  const auth = new LiveCatalog({
    path: config.MESH_CONFIG,
    derive: (c) => ({ jwt: compileAuthSection(c.auth) }),
    logger,
    what: "auth",
  });
  const jwt = new JoseJwtVerifier({ config: () => (auth.loaded ? auth.current.jwt : undefined), logger });
  const keys = new RedisKeyStore(redis);
  const admins = new RedisAdminStore(redis);
  let auditPublisher: EventPublisher | undefined;
  let auditJs: JetStreamClient | undefined;
  const audit = new JetStreamAuditLog({ publisher: () => auditPublisher, js: () => auditJs, logger });
  const limiter = new RedisRateLimiter(redis);
  // Concurrency limits (keys, teams, models): leases and fair queues in Redis, grants by pub/sub.
  const concurrency = new RedisConcurrencyLimiter(redis, logger);
  // The guard's deterministic tier runs in-process; GUARD_ADDR is called only for policies with `guard.deep`.
  const guardPolicies = new LiveCatalog<PolicySet>({
    path: config.MESH_CONFIG,
    derive: (c) => compileGuardSection(c.guard),
    logger,
    what: "guard policy",
  });
  let guardPublisher: EventPublisher | undefined;
  const guard = new InProcessGuard({
    policies: () => guardPolicies.current,
    decisions: guardDecisionSink(() => guardPublisher, logger),
    deep: new GrpcDeepTier(config.GUARD_ADDR),
    logger,
    memo: new TextCheckMemo({ maxChars: config.GATEWAY_GUARD_MEMO_CHARS }),
  });
  const router = new GrpcRouter(config.ROUTER_ADDR, { streams: config.GATEWAY_ROUTER_STREAMS });
  const cost = new GrpcCost(config.COST_ADDR);
  const listHardScopes = async () => {
    const client = cost.client;
    return (await callUnary(client.listHardScopes.bind(client), {}, { deadlineMs: 5_000 })).scopes;
  };
  const budgets = new BudgetView(
    new RedisHardScopes(redis, logger),
    listHardScopes,
    logger,
    async (scope, id, period) => {
      const client = cost.client;
      const res = await callUnary(
        client.getBudget.bind(client),
        {
          scope: SCOPE_OF[scope] ?? Scope.SCOPE_UNSPECIFIED,
          id,
          period: period === "day" ? Period.PERIOD_DAY : Period.PERIOD_MONTH,
        },
        { deadlineMs: 2_000 },
      );
      return res.found && res.budget !== undefined && res.spentUsd >= res.budget.limitUsd;
    },
  );
  let publisher: EventPublisher | undefined;
  let usageSink: JetStreamUsageSink | undefined;
  const usageJournal = new RedisOutboxJournal(redis, "usage");
  const usage = { record: (event: UsageRecorded) => usageSink?.record(event) };
  // Hard-budget holds survive a replica killed before reporting them: another replica settles them.
  const holds = new RedisOpenHolds({
    redis,
    sink: usage,
    logger,
    ttlMs: config.GATEWAY_REPLICA_TTL_MS,
    sweepMs: config.GATEWAY_HOLD_SWEEP_MS,
    journalKey: usageJournal.key,
  });
  const adminKeyHash = config.TOKENMESH_ADMIN_KEY ? hashSecret(config.TOKENMESH_ADMIN_KEY) : undefined;
  const flow = new ChatFlow({
    catalog: () => catalog.current,
    keys,
    adminKeyHash,
    jwt,
    limiter,
    guard,
    router,
    cost,
    budgets,
    usage,
    logger,
    concurrency,
    holds,
  });

  const host = new ServiceHost({
    logger,
    lifecycle,
    grpc: { host: config.GATEWAY_HOST, port: config.GATEWAY_GRPC_PORT },
    checks: {
      nats: () => (nc ? natsReadiness(nc)() : Promise.reject(new Error("not connected"))),
      redis: () => redis.ping(),
      // Ready only when a request could be served: the router answers (a load balancer or `npm start` waiting on
      // this does not send first requests into a 503).
      router: async () => `${(await router.listModels(AbortSignal.timeout(1_000))).length} models`,
    },
  });
  const jobs = createJobs(config, {
    redis,
    flow,
    keys,
    limiter,
    budgets,
    cost,
    catalog: () => catalog.current,
    logger,
  });
  // Facing any client: the runtime's GrpcServer refuses undecodable messages INVALID_ARGUMENT and bounds status
  // messages, for this service as for the internal ones.
  host.grpc!.add(GatewayServiceService, {
    ...gatewayHandlers({ flow, router }),
    ...jobHandlers({ jobs: jobs.service }),
  });

  const http = Fastify({
    bodyLimit: config.GATEWAY_BODY_LIMIT_BYTES,
    requestTimeout: config.GATEWAY_REQUEST_TIMEOUT_MS,
    keepAliveTimeout: config.GATEWAY_KEEPALIVE_TIMEOUT_MS,
    // Node checks request and header timeouts every `connectionsCheckingInterval` (30 s by default), which would
    // let a slow client hold a connection for up to 30 s past its limit.
    serverFactory: (handler) =>
      createServer(
        {
          connectionsCheckingInterval: Math.min(1_000, config.GATEWAY_HEADERS_TIMEOUT_MS),
          headersTimeout: config.GATEWAY_HEADERS_TIMEOUT_MS,
          requestTimeout: config.GATEWAY_REQUEST_TIMEOUT_MS,
        },
        // The request's SERVER span, parented by the client's traceparent; health checks and scrapes get none.
        tracedRequestListener(handler, { ignorePaths: UNTRACED_PATHS }),
      ),
    logger: false,
    requestIdHeader: false,
    // Every request gets an id minted here; a client's own id is only ever a correlation id (request-id.ts).
    genReqId: () => mintRequestId(),
    // Requests Node's parser or Fastify's router refuse (bad framing, oversized headers, bad percent-encoding) are
    // answered in OpenAI's error format too.
    clientErrorHandler: answerClientError,
    frameworkErrors: answerFrameworkError,
  });
  http.server.on("checkExpectation", refuseExpectation);
  http.addHook("onRequest", async (req, reply) => {
    reply.header("x-request-id", req.id);
    const span = trace.getActiveSpan();
    const route = req.routeOptions.url;
    if (span?.isRecording() && route !== undefined) {
      span.updateName(`${req.method} ${route}`);
      span.setAttributes({ "http.route": route, "tokenmesh.request_id": req.id });
    }
    const clientId = correlationId(req.headers["x-client-request-id"] ?? req.headers["x-request-id"]);
    if (clientId !== undefined) {
      reply.header("x-client-request-id", clientId);
      span?.setAttribute("tokenmesh.client_request_id", clientId);
    }
  });
  // Every API response is counted and timed here; hijacked SSE responses count themselves (no onResponse).
  http.addHook("onResponse", async (req, reply) => {
    const endpoint = ENDPOINTS[req.routeOptions.url ?? ""];
    if (!endpoint) return;
    metrics.requests.inc({ api: "http", endpoint, status: String(reply.statusCode) });
    metrics.duration.observe({ api: "http", endpoint }, reply.elapsedTime / 1000);
  });
  registerErrorHandler(http, logger);
  registerOpsRoutes(http, host);
  registerOpenAIRoutes(http, { flow, router });
  registerUpgradeRoutes(http, { flow, upgrades: router, guard });
  registerAnthropicRoutes(http, { flow, catalog: () => catalog.current, logger });
  registerJobRoutes(http, { jobs: jobs.service });
  registerAdminRoutes(http, {
    keys,
    adminKeyHash,
    admins,
    audit,
    cost,
    onBudgetSet: (scope, id, hard) => budgets.budgetSet(scope, id, hard),
  });
  let httpPort = 0;

  // Shutdown order: stop intake (HTTP close waits for in-flight responses; gRPC drains via ServiceHost), then
  // flush usage events, then close connections.
  lifecycle.onShutdown("http: close", ShutdownPhase.StopIntake, () => http.close());
  lifecycle.onShutdown("catalog: unwatch", ShutdownPhase.StopIntake, () => catalog.close());
  lifecycle.onShutdown("auth: unwatch", ShutdownPhase.StopIntake, () => {
    auth.close();
    auditPublisher?.stopRecovery();
  });
  lifecycle.onShutdown("guard policy: unwatch", ShutdownPhase.StopIntake, () => guardPolicies.close());
  lifecycle.onShutdown("budgets: stop", ShutdownPhase.StopIntake, () => budgets.stop());
  // After in-flight requests released their slots: stop refreshing leases (any left expire) and the grant channel.
  lifecycle.onShutdown("concurrency: stop", ShutdownPhase.CloseConnections, () => concurrency.stop());
  // Running jobs are given back (same attempt) for another replica, before the connections close.
  lifecycle.onShutdown("jobs: stop workers", ShutdownPhase.StopIntake, () => jobs.stop());
  lifecycle.onShutdown("outbox: stop recovery", ShutdownPhase.StopIntake, () => publisher?.stopRecovery());
  lifecycle.onShutdown("events: flush", ShutdownPhase.FlushEvents, () =>
    publisher?.flush(Math.max(500, lifecycle.deadlineMs / 2)),
  );
  // Once requests ended and their events are flushed: the heartbeat goes, the holds left go to another replica.
  lifecycle.onShutdown("open holds: stop", ShutdownPhase.FlushEvents, () => holds.stop(lifecycle.deadlineMs / 2));
  lifecycle.onShutdown("guard events: flush", ShutdownPhase.FlushEvents, () => guardPublisher?.flush(1_000));
  lifecycle.onShutdown("audit events: flush", ShutdownPhase.FlushEvents, () => auditPublisher?.flush(1_000));
  lifecycle.onShutdown("clients: close", ShutdownPhase.CloseConnections, () => {
    guard.close();
    router.close();
    cost.close();
  });
  lifecycle.onShutdown("nats: drain", ShutdownPhase.CloseConnections, () => nc?.drain());
  lifecycle.onShutdown("redis: quit", ShutdownPhase.CloseConnections, async () => {
    await redis.quit();
  });

  return {
    host,
    http,
    get httpPort() {
      return httpPort;
    },
    async start() {
      await catalog.start();
      await guardPolicies.start();
      await auth.start();
      await redis.connect();
      nc = await connectNats({ servers: config.NATS_URL, name: "tokenmesh-gateway", logger });
      await ensureStreams(await jetstreamManager(nc), [
        "LLM_USAGE",
        "LLM_BUDGET",
        "LLM_JOBS",
        "LLM_DEADLETTER",
        "LLM_GUARD",
        "LLM_AUDIT",
      ]);
      const js = jetstream(nc);
      // The publishers' acks come back on one inbox (no NATS request object per event).
      const acks = new JetStreamAcks(nc);
      guardPublisher = new EventPublisher({ js: acks, logger, name: "gateway-guard" });
      // Every audit event is journaled before it is sent: a change is never left unaudited by a crash.
      auditJs = js;
      auditPublisher = new EventPublisher({
        js: acks,
        logger,
        name: "gateway-audit",
        journal: new RedisOutboxJournal(redis, "audit"),
      });
      await auditPublisher.startRecovery(RECOVER_AFTER_MS);
      publisher = new EventPublisher({
        js: acks,
        logger,
        name: "gateway-usage",
        journal: usageJournal,
        journalAfterMs: config.GATEWAY_OUTBOX_JOURNAL_AFTER_MS,
        lingerMs: config.GATEWAY_OUTBOX_LINGER_MS,
      });
      // Events a dead replica (or this one, before a restart) accepted but never got stored: publish them again.
      await publisher.startRecovery(RECOVER_AFTER_MS);
      usageSink = new JetStreamUsageSink(publisher, logger);
      await holds.start();
      // Hard-scope changes arrive on a subscriber connection of their own: requests read no Redis key for them.
      await budgets.start(js, redis.duplicate({ lazyConnect: false }));
      await concurrency.start();
      await jobs.start(nc, js, await jetstreamManager(nc));
      await host.start();
      // Headers over Node's 16 KiB limit are refused with 431 by Node itself.
      await http.listen({ host: config.GATEWAY_HOST, port: config.GATEWAY_HTTP_PORT });
      const addr = http.server.address();
      httpPort = typeof addr === "object" && addr ? addr.port : config.GATEWAY_HTTP_PORT;
      logger.info({ http_port: httpPort }, "gateway HTTP listening");
    },
    stop: () => lifecycle.shutdown("stop"),
  };
}
