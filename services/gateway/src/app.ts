import { connectNats, ensureStreams, jetstreamManager, type NatsConnection, natsReadiness } from "@tokenmesh/events";
import { type App, type AppDeps, ServiceHost, ShutdownPhase } from "@tokenmesh/runtime";
import Fastify, { type FastifyInstance } from "fastify";
import { Redis } from "ioredis";
import type { GatewayConfig } from "./config.js";
import { registerOpsRoutes } from "./http/ops.routes.js";

/** Wires the gateway: HTTP (Fastify) and gRPC front doors, Redis, NATS. */
export function createApp(config: GatewayConfig, deps: AppDeps): App & { host: ServiceHost; http: FastifyInstance; readonly httpPort: number } {
  const { logger, lifecycle } = deps;
  let nc: NatsConnection | undefined;
  const redis = new Redis(config.REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 2 });
  redis.on("error", (err) => logger.warn({ err: err.message }, "redis error"));
  const host = new ServiceHost({
    logger,
    lifecycle,
    grpc: { host: config.GATEWAY_HOST, port: config.GATEWAY_GRPC_PORT },
    checks: {
      nats: () => (nc ? natsReadiness(nc)() : Promise.reject(new Error("not connected"))),
      redis: () => redis.ping(),
    },
  });
  const http = Fastify({ bodyLimit: config.GATEWAY_BODY_LIMIT_BYTES, logger: false });
  registerOpsRoutes(http, host);
  let httpPort = 0;

  lifecycle.onShutdown("http: close", ShutdownPhase.StopIntake, () => http.close());
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
      await redis.connect();
      nc = await connectNats({ servers: config.NATS_URL, name: "tokenmesh-gateway", logger });
      await ensureStreams(await jetstreamManager(nc), ["LLM_USAGE", "LLM_JOBS", "LLM_DEADLETTER"]);
      await host.start();
      await http.listen({ host: config.GATEWAY_HOST, port: config.GATEWAY_HTTP_PORT });
      const addr = http.server.address();
      httpPort = typeof addr === "object" && addr ? addr.port : config.GATEWAY_HTTP_PORT;
      logger.info({ http_port: httpPort }, "gateway HTTP listening");
    },
    stop: () => lifecycle.shutdown("stop"),
  };
}
