import { dirname, resolve } from "node:path";
import { loadCatalog, watchCatalog } from "@tokenmesh/catalog";
import { InferenceServiceService } from "@tokenmesh/proto/inference/v1/inference";
import { type App, type AppDeps, isAppError, ServiceHost, ShutdownPhase } from "@tokenmesh/runtime";
import { type InferenceConfig, readSecret } from "./config.js";
import { ModelRegistry } from "./domain/model-registry.js";
import { AnthropicEngine } from "./engines/anthropic/anthropic.engine.js";
import { UpstreamHttpClient } from "./engines/http/http-client.js";
import { LocalEngine } from "./engines/local/local-engine.js";
import { OpenAIEngine } from "./engines/openai/openai.engine.js";
import { inferenceHandlers } from "./grpc/inference.handlers.js";
import { metrics } from "./metrics.js";

const PROVIDER_LABELS: Record<string, string> = { "OpenAI upstream": "openai", "Anthropic upstream": "anthropic" };

/**
 * Wires the inference service: the local GGUF engine and the upstream engines behind one model registry that
 * follows the catalog, the gRPC InferenceService, and the ops port whose `/readyz` reports the device and each
 * model's readiness.
 */
export function createApp(
  config: InferenceConfig,
  deps: AppDeps,
): App & { host: ServiceHost; registry: ModelRegistry } {
  const { logger, lifecycle } = deps;
  const catalogPath = resolve(config.MESH_CONFIG);
  const http = new UpstreamHttpClient({
    onExchange: (provider, status, seconds) =>
      metrics.upstreamDuration.observe({ provider: PROVIDER_LABELS[provider] ?? provider, status }, seconds),
  });
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
  const engines = {
    local,
    openai: new OpenAIEngine({ getSecret: readSecret, http }),
    anthropic: new AnthropicEngine({ getSecret: readSecret, http }),
  };
  const registry = new ModelRegistry({
    engines,
    onLoadError: (model, err) => {
      // An upstream without its key is a configuration state (reported in /readyz and ListModels), not a fault.
      if (isAppError(err) && err.reason === "upstream_key_missing") {
        logger.warn({ model, reason: err.reason }, `model not ready: ${err.message}`);
      } else {
        logger.error({ err, model }, "model failed to load");
      }
    },
  });
  let stopWatching: (() => void) | undefined;

  const modelsInfo = () => {
    const models = registry.list();
    return {
      device: models.find((m) => m.entry.engine === "local")?.status.device ?? "none",
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
      // Ready when every local model is loaded; upstream models without a key are reported, not fatal.
      models: () => {
        const notReady = registry.list().filter((m) => m.entry.engine === "local" && !m.status.ready);
        if (notReady.length > 0) {
          throw new Error(notReady.map((m) => `${m.entry.id}: ${m.status.detail ?? "loading"}`).join("; "));
        }
        return `${registry.list().filter((m) => m.status.ready).length} models ready`;
      },
    },
    info: modelsInfo,
  });
  host.grpc!.add(InferenceServiceService, inferenceHandlers(registry));

  const refreshReadyGauge = () => {
    metrics.modelReady.reset();
    for (const m of registry.list()) {
      metrics.modelReady.set(
        { model: m.entry.id, engine: m.entry.engine, device: m.status.device },
        m.status.ready ? 1 : 0,
      );
    }
  };

  lifecycle.onShutdown("catalog: unwatch", ShutdownPhase.StopIntake, () => stopWatching?.());
  lifecycle.onShutdown("engines: close", ShutdownPhase.CloseConnections, async () => {
    await Promise.all([local.close(), engines.openai.close(), engines.anthropic.close()]);
    await http.close();
  });

  return {
    host,
    registry,
    async start() {
      const catalog = await loadCatalog(catalogPath);
      await registry.apply(catalog);
      refreshReadyGauge();
      stopWatching = watchCatalog(catalogPath, {
        onChange: (c) => {
          logger.info({ models: c.models.length }, "catalog changed; applying");
          registry.apply(c).then(refreshReadyGauge, (err) => logger.error({ err }, "catalog apply failed"));
        },
        onError: (err) => logger.error({ err: err.message }, "catalog change rejected; keeping the previous one"),
      });
      await host.start();
      logger.info(modelsInfo(), "models");
    },
    stop: () => lifecycle.shutdown("stop"),
  };
}
