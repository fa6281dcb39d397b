import { reachableModels } from "@tokenmesh/catalog";
import type {
  ChatChunk,
  ChatRequest,
  ChatResponse,
  EmbedRequest,
  EmbedResponse,
} from "@tokenmesh/proto/common/v1/chat";
import type { RequestContext } from "@tokenmesh/proto/common/v1/context";
import { AppError } from "@tokenmesh/runtime";
import type { Logger } from "@tokenmesh/telemetry";
import { estimateMessageTokens, estimateTextTokens, promptTokenBound } from "@tokenmesh/tokens";
import { ResponseAccumulator } from "./accumulate.js";
import { Admission, type RateInfo } from "./admission.js";
import { Authenticator, isAuto, resolveModel } from "./authenticate.js";
import type { ConcurrencyLimiter } from "./concurrency.js";
import { guardedStream, guardWholeAnswer } from "./guarded-output.js";
import type { Principal } from "./keys.js";
import type {
  Budgets,
  CatalogView,
  Cost,
  Guard,
  JwtVerifier,
  KeyStore,
  OpenHolds,
  RateLimiter,
  RouteHints,
  Router,
  UsageSink,
} from "./ports.js";
import {
  effectivePriority,
  type PriorityName,
  priorityFromEnum,
  priorityFromNumber,
  priorityNumber,
} from "./priority.js";
import { UsageDraft, UsageRecorder } from "./usage-recorder.js";

export type { RateInfo } from "./admission.js";

export interface ChatFlowDeps {
  catalog: CatalogView;
  keys: KeyStore;
  /** The operator's admin key (SHA-256 hex); it may also call the data plane, unlimited. */
  adminKeyHash: string | undefined;
  /** Bearer JWTs accepted beside virtual keys (the catalog's `auth.jwt`). */
  jwt?: JwtVerifier | undefined;
  limiter: RateLimiter;
  guard: Guard;
  router: Router;
  cost: Cost;
  budgets: Budgets;
  usage: UsageSink;
  logger: Logger;
  /** Concurrency limits of keys, teams and models (none apply without it). */
  concurrency?: ConcurrencyLimiter | undefined;
  /** This replica's open hard-budget holds (admission.ts), settled by another replica if this one dies. */
  holds?: OpenHolds | undefined;
}

export interface ChatCall {
  /** The raw `Authorization` header (or gRPC metadata value). */
  authorization: string | undefined;
  /**
   * A caller authenticated earlier (an async job runs as the key that submitted it): `authorization` is then not
   * read. Everything after authentication (admission, guard, routing, usage) applies unchanged.
   */
  principal?: Principal;
  /**
   * The class the request states, as a RequestContext.priority number (1 interactive, 0 standard, -1 batch; the
   * `x-tokenmesh-priority` header, a job's batch). Unset: the request's `priority` field, else the key's default,
   * else interactive; a key's cap lowers it (priority.ts).
   */
  priority?: number;
  /** When the caller stops waiting (epoch ms, e.g. a gRPC deadline): bounds a wait for a concurrency slot. */
  deadlineAt?: number | undefined;
  /**
   * The id the gateway minted for this request. It keys the rate-limit slot, the hard-budget hold, the usage
   * event (`Nats-Msg-Id`) and the ledger entry, so it must never come from the client (a client's own id is a
   * correlation id only).
   */
  requestId: string;
  request: ChatRequest;
  signal: AbortSignal;
  endpoint: "chat" | "embeddings" | "messages";
  /** Routing hints for the router (`x-tokenmesh-route`, `x-tokenmesh-speculative`). */
  hints?: RouteHints | undefined;
}

/** A chat request that passed every check and has its first chunk: from here the response can start. */
export interface StartedChat {
  principal: Principal;
  rate: RateInfo | undefined;
  model: string;
  provider: string;
  /** Why the router chose the model, a speculative request's upgrade id ("" when none), which cache answered. */
  route: RouteFacts;
  chunks: AsyncIterable<ChatChunk>;
}

/** What the router said about a routed answer, for the response headers. */
export interface RouteFacts {
  reason: string;
  upgradeId: string;
  /** "exact", "semantic", or "" when the model answered. */
  cacheKind: string;
  /** For a semantic hit: how close the request was to the stored one (0..1). */
  cacheSimilarity: number;
}

function routeFacts(draft: UsageDraft): RouteFacts {
  return {
    reason: draft.routeReason,
    upgradeId: draft.upgradeId,
    cacheKind: draft.cacheKind,
    cacheSimilarity: draft.cacheSimilarity,
  };
}

export interface EmbedCall {
  authorization: string | undefined;
  /** As for ChatCall. */
  principal?: Principal;
  /** As for ChatCall. */
  priority?: number;
  /** As for ChatCall. */
  deadlineAt?: number | undefined;
  /** Minted by the gateway, as for ChatCall. */
  requestId: string;
  request: EmbedRequest;
  signal: AbortSignal;
}

/** Where nothing else bounds the output, the hold assumes this many tokens. */
const DEFAULT_MAX_OUTPUT = 4096;

/**
 * The request path shared by the HTTP and gRPC front doors (design steps 1–7), each step its own module:
 * authenticate (authenticate.ts), admission: budgets, rate limits, holds (admission.ts), the guard's input check,
 * routing, the guarded output (guarded-output.ts), and exactly one usage event whatever the outcome
 * (usage-recorder.ts).
 *
 * Everything up to the first chunk happens before `start` resolves, so a failure there becomes a proper error
 * status; a failure after it ends the stream with an error (never a clean finish).
 */
export class ChatFlow {
  private readonly auth: Authenticator;
  private readonly admission: Admission;
  private readonly recorder: UsageRecorder;

  constructor(private readonly deps: ChatFlowDeps) {
    this.auth = new Authenticator(deps.keys, deps.adminKeyHash, deps.jwt);
    this.admission = new Admission(deps);
    this.recorder = new UsageRecorder(deps.usage, this.admission);
  }

  /** Resolves the caller from `Authorization: Bearer <key>`; UNAUTHENTICATED otherwise. */
  authenticate(authorization: string | undefined): Promise<Principal> {
    return this.auth.authenticate(authorization);
  }

  /** Runs a streamed chat request up to its first chunk; the rest streams through `chunks`. */
  async start(call: ChatCall): Promise<StartedChat> {
    const draft = draftOf(call, true);
    try {
      const started = await this.begin(call, draft);
      const chunks = guardedStream(
        this.deps.guard,
        started.ctx,
        started.first,
        started.rest,
        {
          onUsage: (chunk) => {
            draft.usage = chunk.usage;
          },
          onFirstToken: () => {
            draft.firstTokenAt ??= performance.now();
          },
          onText: (text) => {
            draft.outputEstimate += estimateTextTokens(text);
          },
          onEnd: (err) => this.recorder.finish(draft, err),
        },
        call.signal,
      );
      return {
        principal: draft.principal!,
        rate: started.rate,
        model: draft.model,
        provider: draft.provider,
        route: routeFacts(draft),
        chunks,
      };
    } catch (err) {
      this.recorder.finish(draft, err);
      throw err;
    }
  }

  /** Runs a chat request to completion and returns the whole (filtered) response. */
  async complete(call: ChatCall): Promise<{ response: ChatResponse; rate: RateInfo | undefined; route: RouteFacts }> {
    const draft = draftOf(call, false);
    try {
      const { ctx, first, rest, rate } = await this.begin(call, draft);
      const acc = new ResponseAccumulator();
      acc.add(first);
      draft.outputEstimate += chunkTextTokens(first);
      for await (const ev of rest) {
        if (ev.chunk) {
          acc.add(ev.chunk);
          draft.outputEstimate += chunkTextTokens(ev.chunk);
          draft.usage = ev.chunk.usage ?? draft.usage;
        }
      }
      draft.usage = acc.usage ?? draft.usage;
      const response = { ...acc.result(draft.provider, draft.cacheHit), id: call.requestId };
      await guardWholeAnswer(this.deps.guard, ctx, response, call.signal);
      this.recorder.finish(draft);
      return { response, rate, route: routeFacts(draft) };
    } catch (err) {
      this.recorder.finish(draft, err);
      throw err;
    }
  }

  /** An embeddings request: the same authentication and admission as chat, then the router, then usage. */
  async embed(call: EmbedCall): Promise<{ response: EmbedResponse; rate: RateInfo | undefined }> {
    const draft = new UsageDraft(
      {
        requestId: call.requestId,
        modelRequested: call.request.model,
        user: call.request.user,
        endpoint: "embeddings",
        signal: call.signal,
      },
      false,
    );
    try {
      const principal = call.principal ?? (await this.auth.authenticate(call.authorization));
      draft.principal = principal;
      draft.model = resolveModel(this.deps.catalog(), principal, call.request.model, "embedding").id;
      const user = principal.user || call.request.user;
      const candidates = reachableModels(this.deps.catalog(), draft.model, "embedding").map((m) => m.id);
      draft.admitted = await this.admission.admit(principal, {
        requestId: call.requestId,
        user,
        model: candidates[0] ?? draft.model,
        candidateModels: candidates,
        inputTokens: call.request.input.reduce((n, s) => n + estimateTextTokens(s) + 1, 0),
        inputTokenBound: promptTokenBound(call.request.input.map((content) => ({ content }))),
        maxOutputTokens: 0,
        holdOutputTokens: 0,
        ...admissionTerms(call, principal, call.request.priority, draft.model),
      });
      const ctx = contextOf(principal, call.requestId, user, draft.admitted.priority);
      const out = await this.deps.router.embed(ctx, { ...call.request, model: draft.model }, call.signal);
      draft.model = out.model;
      draft.provider = out.provider;
      draft.usage = out.response.usage;
      this.recorder.finish(draft);
      return { response: out.response, rate: draft.admitted.rate };
    } catch (err) {
      this.recorder.finish(draft, err);
      throw err;
    }
  }

  /** Steps 1–5: everything before the first chunk. */
  private async begin(call: ChatCall, draft: UsageDraft) {
    const principal = call.principal ?? (await this.auth.authenticate(call.authorization));
    draft.principal = principal;
    const request = call.request;
    const { id: modelId, entry } = resolveModel(this.deps.catalog(), principal, request.model, "chat");
    draft.model = modelId;
    const user = principal.user || request.user;
    // The hold covers every model the request may end up on (never "auto" itself), with an input bound that
    // cannot be low (UTF-8 bytes), tools and images included.
    const candidates = reachableModels(this.deps.catalog(), modelId, "chat").map((m) => m.id);
    // A speculative request also runs its fast model: the key must be allowed it (403/404 otherwise, like the model
    // it asked for), and the hold covers it too.
    const fast = call.hints?.speculativeModel;
    if (fast) {
      const fastId = resolveModel(this.deps.catalog(), principal, fast, "chat").id;
      for (const m of reachableModels(this.deps.catalog(), fastId, "chat")) {
        if (!candidates.includes(m.id)) candidates.push(m.id);
      }
    }
    draft.inputEstimate = estimateMessageTokens(request.messages);
    draft.admitted = await this.admission.admit(principal, {
      requestId: call.requestId,
      user,
      model: candidates[0] ?? modelId,
      candidateModels: candidates,
      inputTokens: draft.inputEstimate,
      inputTokenBound: promptTokenBound(request.messages, {
        tools: request.tools,
        toolChoice: request.toolChoice,
        responseFormat: request.responseFormat,
      }),
      maxOutputTokens: request.maxTokens ?? entry?.max_output_tokens ?? DEFAULT_MAX_OUTPUT,
      holdOutputTokens: request.maxTokens ?? 0,
      ...admissionTerms(call, principal, request.priority, modelId),
    });
    const ctx = contextOf(principal, call.requestId, user, draft.admitted.priority);
    const verdict = await this.deps.guard.checkInput(ctx, modelId, request.messages, call.signal);
    if (verdict.action === "block") {
      throw new AppError(
        "INVALID_ARGUMENT",
        `The request was blocked by the content policy (${verdict.ruleIds.join(", ")})`,
        { reason: "content_policy_violation" },
      );
    }
    const routed = verdict.action === "redact" ? { ...request, messages: verdict.messages } : request;
    const rest = this.deps.router.route(ctx, routed, call.signal, call.hints)[Symbol.asyncIterator]();
    for (;;) {
      const next = await rest.next();
      if (next.done) throw new AppError("UNAVAILABLE", "The model returned no output", { origin: "upstream" });
      const ev = next.value;
      if (ev.route) {
        draft.routed = true;
        draft.model = ev.route.model;
        draft.provider = ev.route.provider;
        draft.cacheHit = ev.route.cacheHit;
        draft.routeReason = ev.route.reason ?? "";
        draft.upgradeId = ev.route.upgradeId ?? "";
        draft.cacheKind = ev.route.cacheHit ? (ev.route.cacheKind ?? "") : "";
        draft.cacheSimilarity = ev.route.cacheSimilarity ?? 0;
      }
      if (ev.chunk) {
        if (ev.chunk.usage) draft.usage = ev.chunk.usage;
        if (ev.chunk.choices.length > 0) draft.firstTokenAt = performance.now();
        return {
          ctx,
          first: ev.chunk,
          rest: { [Symbol.asyncIterator]: () => rest },
          rate: draft.admitted.rate,
        };
      }
    }
  }
}

/** Estimated tokens of a chunk's answer text (content, refusals, tool-call arguments). */
function chunkTextTokens(chunk: ChatChunk): number {
  let n = 0;
  for (const d of chunk.choices) {
    if (d.content) n += estimateTextTokens(d.content);
    if (d.refusal) n += estimateTextTokens(d.refusal);
    for (const tc of d.toolCalls) if (tc.function?.arguments) n += estimateTextTokens(tc.function.arguments);
  }
  return n;
}

function draftOf(call: ChatCall, stream: boolean): UsageDraft {
  return new UsageDraft(
    {
      requestId: call.requestId,
      modelRequested: call.request.model,
      user: call.request.user,
      endpoint: call.endpoint,
      signal: call.signal,
    },
    stream,
  );
}

function contextOf(principal: Principal, requestId: string, user: string, priority: PriorityName): RequestContext {
  return { requestId, keyId: principal.keyId, team: principal.team, user, priority: priorityNumber(priority) };
}

/** A call's admission terms: its effective class, what bounds its wait, the model whose limit applies. */
function admissionTerms(
  call: { priority?: number; deadlineAt?: number | undefined; signal: AbortSignal },
  principal: Principal,
  field: number | undefined,
  model: string,
) {
  const stated = call.priority !== undefined ? priorityFromNumber(call.priority) : priorityFromEnum(field);
  return {
    priority: effectivePriority(stated, principal, "interactive"),
    signal: call.signal,
    deadlineAt: call.deadlineAt,
    limitModel: isAuto(model) ? undefined : model,
  };
}
