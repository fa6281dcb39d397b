import type { ModelEntry } from "@tokenmesh/catalog";
import type { ChatChunk, ChatRequest, ModelInfo } from "@tokenmesh/proto/common/v1/chat";
import type { RouteInfo, RouterServiceService } from "@tokenmesh/proto/router/v1/router";
import { AppError, type CallContext, type Handlers } from "@tokenmesh/runtime";
import type { Logger } from "@tokenmesh/telemetry";
import type { CatalogSource } from "../adapters/catalog.source.js";
import type { InferenceCall, InferenceClient } from "../adapters/inference.client.js";
import type { ModelStatusCache } from "../adapters/model-status.js";
import {
  type CircuitBreaker,
  type FallbackOptions,
  type Generator,
  runWithFallback,
  streamWithFallback,
} from "../domain/fallback.js";
import { type ModelKind, resolveModel } from "../domain/resolve.js";
import { metricsObserver } from "../metrics.js";

export interface RouterHandlerDeps {
  catalog: CatalogSource;
  inference: InferenceClient;
  status: ModelStatusCache;
  breaker: CircuitBreaker | undefined;
  logger: Logger;
}

/**
 * RouterService: resolves the requested model (id, alias or `auto`), then calls inference with retries and
 * fallbacks. `Route` sends one RouteInfo right before the first chunk; once a chunk has been sent, a failure ends
 * the stream with that error (never a silent switch of model mid-answer).
 */
export function routerHandlers(deps: RouterHandlerDeps): Handlers<typeof RouterServiceService> {
  const { catalog, inference, status, breaker } = deps;

  /** Resolves under the snapshot in force when the request arrived, kept for the whole request. */
  function plan(name: string, kind: ModelKind, ctx: CallContext) {
    const snapshot = catalog.snapshot;
    const resolution = resolveModel(snapshot.catalog, snapshot.routes, name, kind, (id) => status.isReady(id));
    const byId = new Map(resolution.candidates.map((m) => [m.id, m]));
    const options: FallbackOptions = {
      candidates: resolution.candidates.map((m) => m.id),
      policy: snapshot.routes.retry,
      signal: ctx.signal,
      deadline: ctx.deadline?.getTime(),
      breaker,
      observer: metricsObserver,
    };
    const model = (id: string): ModelEntry => byId.get(id) as ModelEntry;
    return { options, model };
  }

  return {
    async *route(req, ctx) {
      const request = required(req.request, "request");
      const { options, model } = plan(request.model, "chat", ctx);
      const call: Omit<InferenceCall, "signal"> = { context: req.context, deadline: ctx.deadline };
      const generate: Generator<ChatRequest, ChatChunk> = (id, r, signal) =>
        inference.generate(model(id), r, { ...call, signal });
      for await (const event of streamWithFallback(generate, request, options)) {
        if (event.type === "route") yield { route: routeInfo(model(event.model), event.attempts) };
        else yield { chunk: event.chunk };
      }
    },

    async embed(req, ctx) {
      const request = required(req.request, "request");
      const { options, model } = plan(request.model, "embedding", ctx);
      const result = await runWithFallback(options, (id, signal) =>
        inference.embed(model(id), request, { context: req.context, deadline: ctx.deadline, signal }),
      );
      return { response: result.value, route: routeInfo(model(result.model), result.attempts) };
    },

    async listModels() {
      const snapshot = catalog.snapshot;
      const live = await status.get();
      const models: ModelInfo[] = snapshot.catalog.models.map((m) => {
        const info = live?.get(m.id);
        return {
          id: m.id,
          engine: m.engine,
          device: info?.device ?? (m.engine === "local" ? "" : "remote"),
          // Unknown (inference unreachable) reads as not ready: callers should not count on it.
          ready: info?.ready ?? false,
          contextWindow: m.context_window,
          maxOutputTokens: m.max_output_tokens,
          aliases: m.aliases,
          ownedBy: m.owned_by ?? info?.ownedBy ?? m.engine,
          tier: m.tier ?? tierOf(snapshot.routes.tiers, m.id) ?? "",
        };
      });
      return { models };
    },
  };
}

/** The protocol's RouteInfo for the model that served. */
function routeInfo(model: ModelEntry, attempts: number): RouteInfo {
  return { model: model.id, provider: model.engine, cacheHit: false, attempts };
}

function tierOf(tiers: ReadonlyMap<string, readonly string[]>, id: string): string | undefined {
  for (const [tier, members] of tiers) if (members.includes(id)) return tier;
  return undefined;
}

function required<T>(value: T | undefined, param: string): T {
  if (value === undefined) throw new AppError("INVALID_ARGUMENT", `${param} is required`, { param });
  return value;
}
