import {
  connectNats,
  ensureStreams,
  EventPublisher,
  jetstream,
  jetstreamManager,
  type NatsConnection,
  natsReadiness,
} from "@tokenmesh/events";
import { type App, type AppDeps, ServiceHost, ShutdownPhase } from "@tokenmesh/runtime";
import type { GuardConfig } from "./config.js";

/**
 * Wires the guard: NATS for decision events, the gRPC server and the ops port. The policy handlers join in the
 * request-path issue.
 */
export function createApp(config: GuardConfig, deps: AppDeps): App & { host: ServiceHost } {
  const { logger, lifecycle } = deps;
  let nc: NatsConnection | undefined;
  let publisher: EventPublisher | undefined;
  const host = new ServiceHost({
    logger,
    lifecycle,
    grpc: { host: config.GUARD_HOST, port: config.GUARD_GRPC_PORT },
    ops: { host: config.GUARD_HOST, port: config.GUARD_OPS_PORT },
    checks: { nats: () => (nc ? natsReadiness(nc)() : Promise.reject(new Error("not connected"))) },
  });
  lifecycle.onShutdown("events: flush", ShutdownPhase.FlushEvents, () => publisher?.flush(1_000));
  lifecycle.onShutdown("nats: drain", ShutdownPhase.CloseConnections, () => nc?.drain());
  return {
    host,
    async start() {
      nc = await connectNats({ servers: config.NATS_URL, name: "tokenmesh-guard", logger });
      await ensureStreams(await jetstreamManager(nc), ["LLM_GUARD"]);
      publisher = new EventPublisher({ js: jetstream(nc), logger, name: "guard" });
      await host.start();
    },
    stop: () => lifecycle.shutdown("stop"),
  };
}
