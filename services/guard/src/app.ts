import { LiveCatalog } from "@tokenmesh/catalog";
import {
  connectNats,
  EventPublisher,
  ensureStreams,
  JetStreamAcks,
  jetstreamManager,
  type NatsConnection,
  natsReadiness,
} from "@tokenmesh/events";
import { compileGuardSection, type PolicySet } from "@tokenmesh/guard-policy";
import { GuardServiceService } from "@tokenmesh/proto/guard/v1/guard";
import { type App, type AppDeps, ServiceHost, ShutdownPhase } from "@tokenmesh/runtime";
import { HttpModeration } from "./adapters/moderation.client.js";
import { RouterGuardModel } from "./adapters/router.guard-model.js";
import type { GuardConfig } from "./config.js";
import { NatsDecisionSink } from "./events/decision.publisher.js";
import { guardHandlers } from "./grpc/guard.handler.js";
import { guardMetrics } from "./metrics.js";

/**
 * Wires the guard: the policy from the catalog's `guard:` section (kept current by LiveCatalog), NATS for decision
 * events, the router client for the deep tier's guard models, the gRPC GuardService and the ops port. `start` fails
 * when the catalog or its `guard:` section is invalid; an invalid edit later keeps the policy in force.
 */
export function createApp(
  config: GuardConfig,
  deps: AppDeps,
): App & { host: ServiceHost; policies: LiveCatalog<PolicySet> } {
  const { logger, lifecycle } = deps;
  let nc: NatsConnection | undefined;
  let publisher: EventPublisher | undefined;
  const policies = new LiveCatalog<PolicySet>({
    path: config.MESH_CONFIG,
    derive: (catalog) => compileGuardSection(catalog.guard),
    logger,
    what: "guard policy",
    onReload: (outcome) => guardMetrics.policyReloads.inc({ result: outcome }),
  });
  const models = new RouterGuardModel(config.ROUTER_ADDR);
  const moderation = new HttpModeration();
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
      deep: (context) => ({
        complete: (model, prompt, signal) => models.complete(context, model, prompt, signal),
        moderate: (source, inputs, signal) => moderation.moderate(source, inputs, signal),
      }),
      logger,
    }),
  );
  lifecycle.onShutdown("policy: stop watching", ShutdownPhase.StopIntake, () => policies.close());
  lifecycle.onShutdown("events: flush", ShutdownPhase.FlushEvents, () => publisher?.flush(1_000));
  lifecycle.onShutdown("router: close", ShutdownPhase.CloseConnections, () => models.close());
  lifecycle.onShutdown("nats: drain", ShutdownPhase.CloseConnections, () => nc?.drain());
  return {
    host,
    policies,
    async start() {
      const set = await policies.start();
      logger.info({ path: config.MESH_CONFIG, named: [...set.named.keys()] }, "guard policy loaded");
      nc = await connectNats({ servers: config.NATS_URL, name: "tokenmesh-guard", logger });
      await ensureStreams(await jetstreamManager(nc), ["LLM_GUARD"]);
      publisher = new EventPublisher({ js: new JetStreamAcks(nc), logger, name: "guard" });
      await host.start();
    },
    stop: () => lifecycle.shutdown("stop"),
  };
}
