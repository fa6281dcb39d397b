import {
  connectNats,
  EventPublisher,
  ensureStreams,
  jetstream,
  jetstreamManager,
  type NatsConnection,
  natsReadiness,
} from "@tokenmesh/events";
import { GuardServiceService } from "@tokenmesh/proto/guard/v1/guard";
import { type App, type AppDeps, ServiceHost, ShutdownPhase } from "@tokenmesh/runtime";
import { PolicyStore } from "./adapters/policy-store.js";
import type { GuardConfig } from "./config.js";
import { NatsDecisionSink } from "./events/decision.publisher.js";
import { guardHandlers } from "./grpc/guard.handler.js";

/**
 * Wires the guard: the policy from the catalog file (reloaded on change), NATS for decision events, the gRPC
 * GuardService and the ops port. `start` fails when the catalog or its `guard:` section is invalid.
 */
export function createApp(config: GuardConfig, deps: AppDeps): App & { host: ServiceHost; policies: PolicyStore } {
  const { logger, lifecycle } = deps;
  let nc: NatsConnection | undefined;
  let publisher: EventPublisher | undefined;
  const policies = new PolicyStore(config.MESH_CONFIG, logger);
  const host = new ServiceHost({
    logger,
    lifecycle,
    grpc: { host: config.GUARD_HOST, port: config.GUARD_GRPC_PORT },
    ops: { host: config.GUARD_HOST, port: config.GUARD_OPS_PORT },
    checks: { nats: () => (nc ? natsReadiness(nc)() : Promise.reject(new Error("not connected"))) },
  });
  host.grpc!.add(
    GuardServiceService,
    guardHandlers({
      policies: () => policies.current,
      decisions: new NatsDecisionSink(() => publisher, logger),
    }),
  );
  lifecycle.onShutdown("policy: stop watching", ShutdownPhase.StopIntake, () => policies.stop());
  lifecycle.onShutdown("events: flush", ShutdownPhase.FlushEvents, () => publisher?.flush(1_000));
  lifecycle.onShutdown("nats: drain", ShutdownPhase.CloseConnections, () => nc?.drain());
  return {
    host,
    policies,
    async start() {
      await policies.start();
      nc = await connectNats({ servers: config.NATS_URL, name: "tokenmesh-guard", logger });
      await ensureStreams(await jetstreamManager(nc), ["LLM_GUARD"]);
      publisher = new EventPublisher({ js: jetstream(nc), logger, name: "guard" });
      await host.start();
    },
    stop: () => lifecycle.shutdown("stop"),
  };
}
