import { availableParallelism } from "node:os";
import { dirname, resolve } from "node:path";
import { type Catalog, LiveCatalog } from "@tokenmesh/catalog";
import { InferenceServiceService } from "@tokenmesh/proto/inference/v1/inference";
import { type App, type AppDeps, ServiceHost, ShutdownPhase } from "@tokenmesh/runtime";
import type { InferenceConfig } from "./config.js";
import { pinToCpus } from "./cpu-affinity.js";
import { ModelRegistry } from "./domain/model-registry.js";
import { LocalEngine } from "./engines/local/local-engine.js";
import { inferenceHandlers } from "./grpc/inference.handlers.js";
import { metrics } from "./metrics.js";

/**
 * Wires the inference service: the local GGUF engine behind a model registry that follows the catalog's
 * `engine: local` entries (remote entries are the router's), the gRPC InferenceService, and the ops port whose
 * `/readyz` reports the device and each model's readiness.
 */
export function createApp(
  config: InferenceConfig,
  deps: AppDeps,
): App & { host: ServiceHost; registry: ModelRegistry } {
  const { logger, lifecycle } = deps;
  const catalogPath = resolve(config.MESH_CONFIG);
  const local = new LocalEngine({
    modelsDir: config.INFERENCE_MODELS_DIR,
    baseDir: dirname(catalogPath),
    gpu: config.INFERENCE_GPU === "false" ? false : "auto",
    logger,
    observer: {
      queueDepth: (model, n) => metrics.queueDepth.set({ model }, n),
      active: (model, n) => {
        metrics.activeSequences.set({ model }, n);
        if (n > 0) metrics.batchSize.observe({ model }, n);
      },
    },
  });
  const registry = new ModelRegistry({
    local,
    onLoadError: (model, err) => logger.error({ err, model }, "model failed to load"),
  });

  const refreshReadyGauge = () => {
    metrics.modelReady.reset();
    for (const m of registry.list()) {
      metrics.modelReady.set(
        { model: m.entry.id, engine: m.entry.engine, device: m.status.device },
        m.status.ready ? 1 : 0,
      );
    }
  };
  // Catalog changes are applied one after another, in the order they were read.
  let applying = Promise.resolve();
  const apply = (catalog: Catalog): Promise<void> => {
    applying = applying
      .then(() => registry.apply(catalog))
      .then(refreshReadyGauge, (err: unknown) => logger.error({ err }, "catalog apply failed"));
    return applying;
  };
  const catalog = new LiveCatalog<Catalog>({
    path: catalogPath,
    derive: (c) => c,
    logger,
    onReload: (outcome, c) => {
      if (outcome === "ok") void apply(c);
    },
  });

  const modelsInfo = () => {
    const models = registry.list();
    return {
      device: models[0]?.status.device ?? "none",
      models: Object.fromEntries(
        models.map((m) => [
          m.entry.id,
          {
            engine: m.entry.engine,
            ready: m.status.ready,
            device: m.status.device,
            ...(m.status.detail ? { detail: m.status.detail } : {}),
          },
        ]),
      ),
    };
  };
  const host = new ServiceHost({
    logger,
    lifecycle,
    grpc: { host: config.INFERENCE_HOST, port: config.INFERENCE_GRPC_PORT },
    ops: { host: config.INFERENCE_HOST, port: config.INFERENCE_OPS_PORT },
    checks: {
      // Ready when every local model is loaded.
      models: () => {
        const notReady = registry.list().filter((m) => !m.status.ready);
        if (notReady.length > 0) {
          throw new Error(notReady.map((m) => `${m.entry.id}: ${m.status.detail ?? "loading"}`).join("; "));
        }
        return `${registry.list().length} models ready`;
      },
    },
    info: modelsInfo,
  });
  host.grpc!.add(InferenceServiceService, inferenceHandlers(registry));

  lifecycle.onShutdown("catalog: unwatch", ShutdownPhase.StopIntake, () => catalog.close());
  lifecycle.onShutdown("engine: close", ShutdownPhase.CloseConnections, () => local.close());

  return {
    host,
    registry,
    async start() {
      if (config.INFERENCE_CPU_AFFINITY !== undefined) {
        // Before any model loads: the engine's threads inherit the mask.
        pinToCpus(config.INFERENCE_CPU_AFFINITY);
        logger.info({ cpus: config.INFERENCE_CPU_AFFINITY, usable: availableParallelism() }, "kept on CPUs");
      }
      await apply(await catalog.start());
      await host.start();
      logger.info(modelsInfo(), "models");
    },
    stop: () => lifecycle.shutdown("stop"),
  };
}
