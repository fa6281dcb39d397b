import { randomUUID } from "node:crypto";
import type { Catalog, LiveCatalog, ModelEntry } from "@tokenmesh/catalog";
import type { ChatChunk, ChatRequest, ModelInfo } from "@tokenmesh/proto/common/v1/chat";
import { RequestContext } from "@tokenmesh/proto/common/v1/context";
import {
  CacheKind,
  RouteInfo,
  type RouteRequest,
  type RouteResponse,
  RouterServiceService,
  type RouteStreamRequest,
  type RouteStreamResponse,
} from "@tokenmesh/proto/router/v1/router";
import { AppError, type CallContext, type Handlers, Multiplexed } from "@tokenmesh/runtime";
import { currentTraceIds, type Logger, trace } from "@tokenmesh/telemetry";
import { estimateMessageTokens } from "@tokenmesh/tokens";
import type { RoutingSnapshot } from "../adapters/catalog.source.js";
import type { InferenceCall } from "../adapters/inference.client.js";
import type { ModelCaller } from "../adapters/model.caller.js";
import type { ModelReadiness } from "../adapters/model-status.js";
import type { RedisUpgradeStore } from "../adapters/redis-upgrade-store.js";
import type { SemanticCache } from "../adapters/semantic-cache.js";
import { chooseAuto, ROUTE_PREFERENCES, type RoutePreference } from "../domain/auto-route.js";
import { type AnswerRecorder, cacheKey, cacheMode, cacheScope, type ResponseCache } from "../domain/cache.js";
import {
  type CircuitBreaker,
  type FallbackOptions,
  type Generator,
  runWithFallback,
  streamWithFallback,
} from "../domain/fallback.js";
import { hedged, hedgePlan, type Timer } from "../domain/hedge.js";
import type { LatencyStats } from "../domain/latency.js";
import { AUTO, lookupModel, type ModelKind, resolveModel, tierCandidates } from "../domain/resolve.js";
import { ServedUsage } from "../domain/served-usage.js";
import type { ServedUsageSink } from "../events/usage-served.publisher.js";
import { metricsObserver, routerMetrics } from "../metrics.js";
import { batchChunks } from "./batch-chunks.js";
import { runUpgrade } from "./speculative.js";

export interface RouterHandlerDeps {
  catalog: Pick<LiveCatalog<RoutingSnapshot>, "current">;
  /** Runs one attempt of a model: remote providers in-process, local models through inference. */
  models: Pick<ModelCaller, "generate" | "embed">;
  readiness: Pick<ModelReadiness, "isReady" | "describe">;
  breaker: CircuitBreaker | undefined;
  /** The exact response cache; without one, `routes.cache` is ignored. */
  cache?: ResponseCache<ChatChunk> | undefined;
  /** The semantic cache (pgvector), behind the exact one; without one, `routes.semantic_cache` is ignored. */
  semantic?: Pick<SemanticCache, "open"> | undefined;
  /** Where what the providers served each request is reported (llm.usage.served.v2). */
  served?: ServedUsageSink | undefined;
  /** Recent time to first token per model (hedging waits, `auto`'s latency tie-break); none: no hedging by percentile. */
  latency?: LatencyStats | undefined;
  /** Where speculative requests' upgrades are kept; without it, a speculative request is refused. */
  upgrades?: RedisUpgradeStore | undefined;
  /** Injectable for tests: schedules hedges. */
  timer?: Timer | undefined;
  logger: Logger;
}

/** The percentile `auto` reads as a model's typical time to first token. */
const TYPICAL_PERCENTILE = 50;
/** A speculative request's slow model runs detached from its caller, but never longer than this. */
const SLOW_RUN_TIMEOUT_MS = 10 * 60_000;

/**
 * RouterService: resolves the requested model (id, alias or `auto`), then calls it with retries and fallbacks: a
 * remote model through its provider in-process, a local model through inference. `Route` sends one RouteInfo right before the first chunk; once a chunk has been sent, a failure ends
 * the stream with that error (never a silent switch of model mid-answer).
 *
 * With `routes.cache` enabled, `Route` first looks the request up in the exact cache under the resolved model: a
 * hit sends RouteInfo { cacheHit: true, attempts: 0 } and replays the stored chunks (usage on the last one)
 * without calling the model. A miss streams as usual while recording the chunks, and stores them under the model
 * that served only when the stream ended normally (finish reason and usage seen, no error, not cancelled).
 *
 * With `routes.semantic_cache` enabled, a request the exact cache did not answer (temperature > 0 included) is
 * embedded and looked up among the stored answers of the resolved model, scope and request shape: one at least
 * `threshold` similar is replayed the same way, with RouteInfo { cacheHit, cacheKind: SEMANTIC, cacheSimilarity }.
 * The lookup never costs more than `timeout_ms`; a complete fresh answer is stored under the model that served.
 */
export function routerHandlers(deps: RouterHandlerDeps): Handlers<typeof RouterServiceService> {
  const { catalog, models, readiness, breaker, cache, served, latency, upgrades, logger } = deps;

  /**
   * Resolves under the snapshot in force when the request arrived, kept for the whole request. Bare `auto` with
   * `routes.auto.scoring` goes by the request's complexity and cost (chooseAuto); everything else by resolveModel.
   */
  function plan(name: string, kind: ModelKind, ctx: CallContext, chat?: ChatRequest, prefer?: RoutePreference) {
    const snapshot = catalog.current;
    const isReady = (id: string) => {
      const entry = snapshot.models.get(id);
      return entry !== undefined && readiness.isReady(entry);
    };
    const choice =
      chat !== undefined && name === AUTO
        ? chooseAuto({
            request: chat,
            routes: snapshot.routes,
            models: snapshot.models,
            isReady,
            latencyMs: (id) => latency?.percentile(id, TYPICAL_PERCENTILE),
            prefer,
          })
        : undefined;
    const resolution =
      choice === undefined
        ? resolveModel(snapshot.catalog, snapshot.routes, name, kind, isReady)
        : {
            model: choice.model,
            tier: choice.tier,
            candidates: tierCandidates(snapshot.catalog, snapshot.routes, choice.tier, choice.model),
          };
    const reason = choice?.reason ?? plainReason(snapshot.catalog, name, resolution.tier);
    const byId = new Map(resolution.candidates.map((m) => [m.id, m]));
    // A hedge may go to a model outside the candidates (`hedge.to`).
    for (const m of resolution.candidates) {
      const to = m.hedge?.to === undefined ? undefined : snapshot.models.get(m.hedge.to);
      if (to !== undefined && !byId.has(to.id)) byId.set(to.id, to);
    }
    const options: FallbackOptions = {
      candidates: resolution.candidates.map((m) => m.id),
      policy: snapshot.routes.retry,
      signal: ctx.signal,
      deadline: ctx.deadline?.getTime(),
      breaker,
      observer: metricsObserver,
    };
    const model = (id: string): ModelEntry => byId.get(id) as ModelEntry;
    return { options, model, resolved: resolution.model, cachePolicy: snapshot.routes.cache, reason };
  }

  /**
   * Speculative fast-plus-slow: the requested model (`main`) runs in the background to its end, detached from the
   * caller, and its answer is stored as the upgrade; the caller is served by `fastName`. Both are billed.
   */
  async function startUpgrade(
    req: RouteRequest,
    request: ChatRequest,
    main: ReturnType<typeof plan>,
    fastName: string,
    ctx: CallContext,
  ) {
    if (upgrades === undefined) {
      throw new AppError("FAILED_PRECONDITION", "Speculative requests are not enabled on this router", {
        reason: "speculative_unavailable",
      });
    }
    const fast = plan(fastName, "chat", ctx);
    const context = req.context ?? RequestContext.fromPartial({ requestId: randomUUID() });
    const id = context.requestId || randomUUID();
    await upgrades.put(id, { keyId: context.keyId, status: "pending" });
    const slowTally = new ServedUsage(() => estimateMessageTokens(request.messages));
    const slowGenerate: Generator<ChatRequest, ChatChunk> = (m, r, signal) =>
      slowTally.track(main.model(m), models.generate(main.model(m), r, { context, deadline: undefined, signal }));
    const events = streamWithFallback(
      slowGenerate,
      { ...request, stream: false },
      { ...main.options, signal: AbortSignal.timeout(SLOW_RUN_TIMEOUT_MS), deadline: undefined },
    );
    upgrades.track(
      runUpgrade({
        id,
        context,
        modelRequested: request.model,
        events,
        route: (m, attempts) => routeInfo(main.model(m), attempts, `speculative:slow ${main.reason}`),
        tally: slowTally,
        store: upgrades,
        served,
        traceId: currentTraceIds().traceId,
        logger,
      }),
    );
    return { id, fast: { ...fast, reason: `speculative:fast=${fast.resolved.id} slow=${main.resolved.id}` } };
  }

  // made-once: routerHandlers runs once, at startup (scripts/check-closures.mjs).
  /** Route's answer: the route taken (once the first chunk is there), then the chunks. */
  async function* routeEvents(req: RouteRequest, ctx: CallContext): AsyncGenerator<RouteResponse> {
    const request = required(req.request, "request");
    const prefer = ROUTE_PREFERENCES.find((p) => p === req.hints?.prefer);
    const main = plan(request.model, "chat", ctx, request, prefer);
    const fastName = req.hints?.speculativeModel ?? "";
    const upgrade = fastName === "" ? undefined : await startUpgrade(req, request, main, fastName, ctx);
    const upgradeId = upgrade?.id ?? "";
    const { options, model, resolved, cachePolicy, reason } = upgrade?.fast ?? main;
    trace.getActiveSpan()?.setAttribute("tokenmesh.route.reason", reason);
    const mode = cache === undefined ? "off" : cacheMode(cachePolicy, request);
    const scopeOf = (id: string) => cacheScope(req.context, model(id)?.shared_cache ?? false);
    const primaryKey =
      mode === "lookup" || mode === "refresh" ? cacheKey(resolved.id, request, scopeOf(resolved.id)) : undefined;
    if (cache !== undefined && mode === "lookup" && primaryKey !== undefined) {
      const hit = await cache.lookup(primaryKey);
      // The key covers the model id, so a stored answer always names `resolved`; anything else is not ours.
      if (hit !== undefined && hit.model === resolved.id) {
        routerMetrics.cacheRequests.inc({ result: "hit" });
        yield {
          route: {
            ...routeInfo(resolved, 0, `${reason} cache=hit`),
            cacheHit: true,
            cacheKind: CacheKind.CACHE_KIND_EXACT,
            upgradeId,
          },
        };
        for (const chunk of hit.chunks) yield { chunk };
        return;
      }
      routerMetrics.cacheRequests.inc({ result: "miss" });
    } else if (mode !== "off") {
      routerMetrics.cacheRequests.inc({ result: "bypass" });
    }
    const caller = req.context ?? { keyId: "", team: "" };
    const semantic = deps.semantic?.open(catalog.current.routes.semanticCache, request, caller, resolved.id);
    if (semantic?.mode === "lookup") {
      const found = await semantic.lookup();
      if (found.result === "hit") {
        const info = routeInfo(resolved, 0, `${reason} cache=semantic`);
        yield {
          route: {
            ...info,
            cacheHit: true,
            cacheKind: CacheKind.CACHE_KIND_SEMANTIC,
            cacheSimilarity: found.similarity,
            upgradeId,
          },
        };
        for (const chunk of found.answer.chunks) yield { chunk };
        return;
      }
    }

    const call: Omit<InferenceCall, "signal"> = { context: req.context, deadline: ctx.deadline };
    // What each attempt consumes is counted where the provider is called, and reported whatever happens next.
    // What the providers served is reported as soon as it is known (and again if it grows): a router that dies
    // while forwarding an answer has already said what it cost.
    let outcome = "error";
    const traceId = currentTraceIds().traceId;
    const tally = new ServedUsage(
      () => estimateMessageTokens(request.messages),
      (totals) => {
        served?.record(req.context, totals, {
          modelRequested: request.model,
          // The provider's own count means the answer completed; an estimate ended early.
          status: totals.estimated ? (ctx.signal.aborted ? "cancelled" : outcome) : "ok",
          endpoint: "chat",
          stream: request.stream,
          traceId,
        });
      },
    );
    // One attempt on one model. Its time to first token feeds the latency statistics; `hedge` marks an attempt
    // that may lose a race, whose usage then counts as discarded (its input too, if it was cut off before any).
    const attempt = (id: string, r: ChatRequest, signal: AbortSignal, hedge?: { lost(): boolean }) => {
      const started = performance.now();
      const own = new AbortController();
      const abort = () => own.abort(signal.reason);
      if (signal.aborted) abort();
      else signal.addEventListener("abort", abort, { once: true });
      const chunks = tally.track(model(id), models.generate(model(id), r, { ...call, signal: own.signal }), {
        drainOnCancel: !request.stream,
        discarded: hedge === undefined ? false : () => hedge.lost(),
        billsInput: hedge === undefined ? undefined : () => hedge.lost(),
      });
      return {
        cancel: () => own.abort(new AppError("CANCELLED", "a hedged attempt lost the race")),
        chunks: timedAttempt(
          chunks,
          (ms) => latency?.record(id, ms),
          started,
          () => signal.removeEventListener("abort", abort),
        ),
      };
    };
    // The model that won a hedged attempt, by candidate id, for RouteInfo.
    const hedgeWinners = new Map<string, { model: string; index: number }>();
    const generate: Generator<ChatRequest, ChatChunk> = (id, r, callerSignal) => {
      // A streamed answer stops when its caller goes (the provider stops generating and bills what it made); a
      // non-streamed one is generated whole anyway, so it is read to its end and billed even if the caller is
      // gone (its own timeout still bounds it).
      const signal = request.stream ? callerSignal : new AbortController().signal;
      const hedgePolicy = hedgePlan(id, model(id).hedge, (m, p) => latency?.percentile(m, p));
      if (hedgePolicy === undefined) return attempt(id, r, signal).chunks;
      let winner = -1;
      return hedged({
        primary: id,
        plan: hedgePolicy,
        timer: deps.timer,
        start: (target, index) => attempt(target, r, signal, { lost: () => winner !== -1 && winner !== index }),
        onHedge: (target) => routerMetrics.hedges.inc({ model: id, to: target }),
        onWinner: (target, index) => {
          winner = index;
          hedgeWinners.set(id, { model: target, index });
          if (index > 0) routerMetrics.hedgeWins.inc({ model: id, to: target });
        },
      });
    };
    let recorder: AnswerRecorder<ChatChunk> | undefined;
    let semanticRecorder: AnswerRecorder<ChatChunk> | undefined;
    try {
      for await (const event of streamWithFallback(generate, request, options)) {
        if (event.type === "route") {
          if (cache !== undefined && primaryKey !== undefined) {
            // Stored under the model that actually answered: a fallback's answer is not the primary's.
            const key = event.model === resolved.id ? primaryKey : cacheKey(event.model, request, scopeOf(event.model));
            recorder = cache.record(key, event.model, cachePolicy);
          }
          const won = hedgeWinners.get(event.model);
          const servedBy = won?.model ?? event.model;
          semanticRecorder = semantic?.record(servedBy);
          let why = reason;
          if (event.model !== resolved.id) why += ` fallback=${event.model}`;
          if (won !== undefined && won.index > 0) why += ` hedge=won:${won.model}`;
          if (why !== reason) trace.getActiveSpan()?.setAttribute("tokenmesh.route.reason", why);
          yield { route: { ...routeInfo(model(servedBy), event.attempts, why), upgradeId } };
        } else {
          recorder?.add(event.chunk);
          semanticRecorder?.add(event.chunk);
          yield { chunk: event.chunk };
        }
      }
      outcome = "ok";
    } finally {
      if (ctx.signal.aborted) outcome = "cancelled";
    }
    // Reached only when the stream ended without error; a cancelled call may still end quietly, so check.
    if (ctx.signal.aborted) return;
    const cached = recorder?.finish();
    if (cached !== undefined && cached !== "stored") logger.debug({ outcome: cached }, "answer not cached");
    const kept = semanticRecorder?.finish();
    if (kept !== undefined && kept !== "stored") logger.debug({ outcome: kept }, "answer not semantically cached");
  }

  const route = (req: RouteRequest, ctx: CallContext): AsyncIterable<RouteResponse> => {
    const events = routeEvents(req, ctx);
    const routed = req.routeWithFirstChunk ? withRouteOnFirstChunk(events) : events;
    // Only a client reading a stream gains from its first chunk leaving before the rest is read; a whole answer's
    // end would travel a turn later, in a write (and a wake-up of the gateway) of its own.
    return req.batchChunks ? batchChunks(routed, { firstAlone: req.request?.stream === true }) : routed;
  };

  return {
    route,
    // The gateway's form of Route: its calls share long-lived streams, each served exactly as a Route call.
    routeStream: new Multiplexed<RouteStreamRequest, RouteStreamResponse>(RouterServiceService.route.path, route),

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
      return { response: result.value, route: routeInfo(model(result.model), result.attempts, "") };
    },

    async getUpgrade(req) {
      const found = upgrades === undefined ? undefined : await upgrades.get(req.upgradeId);
      // Another key's upgrade reads as unknown: its existence is not disclosed.
      if (found === undefined || found.keyId !== (req.context?.keyId ?? "")) {
        throw new AppError("NOT_FOUND", `No upgrade "${req.upgradeId}" (unknown, expired, or not yours)`, {
          reason: "upgrade_not_found",
          param: "id",
        });
      }
      return { status: found.status, response: found.response, route: found.route, error: found.error ?? "" };
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

/**
 * Passes an attempt's chunks on, reporting its time to its first chunk and calling `done` when it ends however it
 * ends. A module-level generator on purpose: the same loop as an async generator written inline in the request's
 * handler kept every request's objects alive through V8's young-generation collections (bench/gateway/README.md,
 * "Stop 20"), which cost the router a 5 ms pause for every scavenge.
 */
async function* timedAttempt<C>(
  chunks: AsyncIterable<C>,
  firstAfter: (ms: number) => void,
  started: number,
  done: () => void,
): AsyncGenerator<C> {
  let first = true;
  try {
    for await (const chunk of chunks) {
      if (first) {
        first = false;
        firstAfter(performance.now() - started);
      }
      yield chunk;
    }
  } finally {
    done();
  }
}

/** The protocol's RouteInfo for the model that served. */
function routeInfo(model: ModelEntry, attempts: number, reason: string): RouteInfo {
  return RouteInfo.fromPartial({ model: model.id, provider: model.engine, cacheHit: false, attempts, reason });
}

/** Why a request named this model: `model:<id>`, `alias:<name>`, `auto:<tier> requested` or `auto:<tier> default`. */
function plainReason(catalog: Catalog, name: string, tier: string | undefined): string {
  if (tier !== undefined) return `auto:${tier} ${name === AUTO ? "default" : "requested"}`;
  const entry = lookupModel(catalog, name);
  return entry !== undefined && entry.id !== name ? `alias:${name}` : `model:${name}`;
}

function tierOf(tiers: ReadonlyMap<string, readonly string[]>, id: string): string | undefined {
  for (const [tier, members] of tiers) if (members.includes(id)) return tier;
  return undefined;
}

function required<T>(value: T | undefined, param: string): T {
  if (value === undefined) throw new AppError("INVALID_ARGUMENT", `${param} is required`, { param });
  return value;
}

/**
 * Carries the route on the answer's first chunk (`chunk_route`): one message instead of two, which is a whole
 * non-streamed answer in one message. A route that no chunk follows (the answer ends or fails first) is sent on its
 * own before the end or the error, as without this.
 */
export async function* withRouteOnFirstChunk(events: AsyncIterable<RouteResponse>): AsyncGenerator<RouteResponse> {
  let route: RouteInfo | undefined;
  try {
    for await (const ev of events) {
      if (ev.route !== undefined) {
        if (route !== undefined) yield { route };
        route = ev.route;
      } else if (route !== undefined && ev.chunk !== undefined) {
        yield { chunk: ev.chunk, chunkRoute: route };
        route = undefined;
      } else {
        yield ev;
      }
    }
  } catch (err) {
    if (route !== undefined) yield { route };
    throw err;
  }
  if (route !== undefined) yield { route };
}
