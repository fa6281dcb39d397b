import type { LiveCatalog, ModelEntry } from "@tokenmesh/catalog";
import type { ChatChunk, ChatRequest, ModelInfo } from "@tokenmesh/proto/common/v1/chat";
import type { RouteInfo, RouterServiceService } from "@tokenmesh/proto/router/v1/router";
import { AppError, type CallContext, type Handlers } from "@tokenmesh/runtime";
import { currentTraceIds, type Logger } from "@tokenmesh/telemetry";
import { estimateMessageTokens } from "@tokenmesh/tokens";
import type { RoutingSnapshot } from "../adapters/catalog.source.js";
import type { InferenceCall } from "../adapters/inference.client.js";
import type { ModelCaller } from "../adapters/model.caller.js";
import type { ModelReadiness } from "../adapters/model-status.js";
import { type AnswerRecorder, cacheKey, cacheMode, type ResponseCache } from "../domain/cache.js";
import {
  type CircuitBreaker,
  type FallbackOptions,
  type Generator,
  runWithFallback,
  streamWithFallback,
} from "../domain/fallback.js";
import { type ModelKind, resolveModel } from "../domain/resolve.js";
import { ServedUsage } from "../domain/served-usage.js";
import type { ServedUsageSink } from "../events/usage-served.publisher.js";
import { metricsObserver, routerMetrics } from "../metrics.js";

export interface RouterHandlerDeps {
  catalog: Pick<LiveCatalog<RoutingSnapshot>, "current">;
  /** Runs one attempt of a model: remote providers in-process, local models through inference. */
  models: Pick<ModelCaller, "generate" | "embed">;
  readiness: Pick<ModelReadiness, "isReady" | "describe">;
  breaker: CircuitBreaker | undefined;
  /** The exact response cache; without one, `routes.cache` is ignored. */
  cache?: ResponseCache<ChatChunk> | undefined;
  /** Where what the providers served each request is reported (llm.usage.served.v1). */
  served?: ServedUsageSink | undefined;
  logger: Logger;
}

/**
 * RouterService: resolves the requested model (id, alias or `auto`), then calls it with retries and fallbacks: a
 * remote model through its provider in-process, a local model through inference. `Route` sends one RouteInfo right before the first chunk; once a chunk has been sent, a failure ends
 * the stream with that error (never a silent switch of model mid-answer).
 *
 * With `routes.cache` enabled, `Route` first looks the request up in the exact cache under the resolved model: a
 * hit sends RouteInfo { cacheHit: true, attempts: 0 } and replays the stored chunks (usage on the last one)
 * without calling the model. A miss streams as usual while recording the chunks, and stores them under the model
 * that served only when the stream ended normally (finish reason and usage seen, no error, not cancelled).
 */
export function routerHandlers(deps: RouterHandlerDeps): Handlers<typeof RouterServiceService> {
  const { catalog, models, readiness, breaker, cache, served, logger } = deps;

  /** Resolves under the snapshot in force when the request arrived, kept for the whole request. */
  function plan(name: string, kind: ModelKind, ctx: CallContext) {
    const snapshot = catalog.current;
    const resolution = resolveModel(snapshot.catalog, snapshot.routes, name, kind, (id) => {
      const entry = snapshot.models.get(id);
      return entry !== undefined && readiness.isReady(entry);
    });
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
    return { options, model, resolved: resolution.model, cachePolicy: snapshot.routes.cache };
  }

  return {
    async *route(req, ctx) {
      const request = required(req.request, "request");
      const { options, model, resolved, cachePolicy } = plan(request.model, "chat", ctx);
      const mode = cache === undefined ? "off" : cacheMode(cachePolicy, request);
      const primaryKey = mode === "lookup" || mode === "refresh" ? cacheKey(resolved.id, request) : undefined;
      if (cache !== undefined && mode === "lookup" && primaryKey !== undefined) {
        const hit = await cache.lookup(primaryKey);
        // The key covers the model id, so a stored answer always names `resolved`; anything else is not ours.
        if (hit !== undefined && hit.model === resolved.id) {
          routerMetrics.cacheRequests.inc({ result: "hit" });
          yield { route: { ...routeInfo(resolved, 0), cacheHit: true } };
          for (const chunk of hit.chunks) yield { chunk };
          return;
        }
        routerMetrics.cacheRequests.inc({ result: "miss" });
      } else if (mode !== "off") {
        routerMetrics.cacheRequests.inc({ result: "bypass" });
      }

      const call: Omit<InferenceCall, "signal"> = { context: req.context, deadline: ctx.deadline };
      // What each attempt consumes is counted where the provider is called, and reported whatever happens next.
      const tally = new ServedUsage(() => estimateMessageTokens(request.messages));
      // A streamed answer stops when its caller goes (the provider stops generating and bills what it made); a
      // non-streamed one is generated whole anyway, so it is read to its end and billed even if the caller is gone
      // (its own timeout still bounds it).
      const generate: Generator<ChatRequest, ChatChunk> = request.stream
        ? (id, r, signal) => tally.track(model(id), models.generate(model(id), r, { ...call, signal }))
        : (id, r) =>
            tally.track(model(id), models.generate(model(id), r, { ...call, signal: new AbortController().signal }), {
              drainOnCancel: true,
            });
      let recorder: AnswerRecorder<ChatChunk> | undefined;
      let outcome = "error";
      try {
        for await (const event of streamWithFallback(generate, request, options)) {
          if (event.type === "route") {
            if (cache !== undefined && primaryKey !== undefined) {
              // Stored under the model that actually answered: a fallback's answer is not the primary's.
              const key = event.model === resolved.id ? primaryKey : cacheKey(event.model, request);
              recorder = cache.record(key, event.model, cachePolicy);
            }
            yield { route: routeInfo(model(event.model), event.attempts) };
          } else {
            recorder?.add(event.chunk);
            yield { chunk: event.chunk };
          }
        }
        outcome = "ok";
      } finally {
        if (ctx.signal.aborted) outcome = "cancelled";
        const traceId = currentTraceIds().traceId;
        void tally.settled().then(() => {
          const totals = tally.result();
          if (totals === undefined) return;
          served?.record(req.context, totals, {
            modelRequested: request.model,
            status: outcome,
            endpoint: "chat",
            stream: request.stream,
            traceId,
          });
        });
      }
      // Reached only when the stream ended without error; a cancelled call may still end quietly, so check.
      if (ctx.signal.aborted) return;
      const cached = recorder?.finish();
      if (cached !== undefined && cached !== "stored") logger.debug({ outcome: cached }, "answer not cached");
    },

    async embed(req, ctx) {
      const request = required(req.request, "request");
      const { options, model } = plan(request.model, "embedding", ctx);
      const result = await runWithFallback(options, (id, signal) =>
        models.embed(model(id), request, { context: req.context, deadline: ctx.deadline, signal }),
      );
      const usage = result.value.usage;
      if (usage !== undefined && served !== undefined) {
        const tally = new ServedUsage(() => 0);
        tally.add(model(result.model), usage, false);
        served.record(req.context, tally.result()!, {
          modelRequested: request.model,
          status: "ok",
          endpoint: "embeddings",
          stream: false,
          traceId: currentTraceIds().traceId,
        });
      }
      return { response: result.value, route: routeInfo(model(result.model), result.attempts) };
    },

    async listModels() {
      const snapshot = catalog.current;
      const status = await readiness.describe(snapshot.catalog.models);
      const list: ModelInfo[] = snapshot.catalog.models.map((m) => {
        const info = status.get(m.id);
        return {
          id: m.id,
          engine: m.engine,
          device: info?.device ?? "",
          ready: info?.ready ?? false,
          contextWindow: m.context_window,
          maxOutputTokens: m.max_output_tokens,
          aliases: m.aliases,
          ownedBy: m.owned_by ?? (m.engine === "local" ? "tokenmesh" : m.engine),
          tier: m.tier ?? tierOf(snapshot.routes.tiers, m.id) ?? "",
        };
      });
      return { models: list };
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
