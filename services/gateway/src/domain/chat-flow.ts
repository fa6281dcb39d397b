import { findModel, type ModelEntry } from "@tokenmesh/catalog";
import {
  type ChatChunk,
  type ChatDelta,
  type ChatRequest,
  type ChatResponse,
  type EmbedRequest,
  type EmbedResponse,
  FinishReason,
  Role,
  type Usage,
} from "@tokenmesh/proto/common/v1/chat";
import type { RequestContext } from "@tokenmesh/proto/common/v1/context";
import type { UsageRecorded } from "@tokenmesh/proto/events/v1/events";
import { AppError, BudgetExceededError, ResourceExhaustedError, toAppError } from "@tokenmesh/runtime";
import { currentTraceIds, type Logger } from "@tokenmesh/telemetry";
import { estimateMessageTokens, estimateTextTokens } from "@tokenmesh/tokens";
import { ResponseAccumulator } from "./accumulate.js";
import { AsyncQueue } from "./async-queue.js";
import { bearerToken, hashSecret, modelAllowed, type Principal, principalOf, sameHash } from "./keys.js";
import type { Budgets, CatalogView, Cost, Guard, KeyStore, RateLimiter, Router, UsageSink } from "./ports.js";

export interface ChatFlowDeps {
  catalog: CatalogView;
  keys: KeyStore;
  /** The operator's admin key (SHA-256 hex); it may also call the data plane, unlimited. */
  adminKeyHash: string | undefined;
  limiter: RateLimiter;
  guard: Guard;
  router: Router;
  cost: Cost;
  budgets: Budgets;
  usage: UsageSink;
  logger: Logger;
}

/** Rate-limit state for OpenAI's `x-ratelimit-*` headers. */
export interface RateInfo {
  limitRequests: number;
  remainingRequests: number;
  limitTokens: number;
  remainingTokens: number;
  resetMs: number;
}

export interface ChatCall {
  /** The raw `Authorization` header (or gRPC metadata value). */
  authorization: string | undefined;
  requestId: string;
  request: ChatRequest;
  signal: AbortSignal;
  endpoint: "chat" | "embeddings";
}

/** A chat request that passed every check and has its first chunk: from here the response can start. */
export interface StartedChat {
  principal: Principal;
  rate: RateInfo | undefined;
  model: string;
  provider: string;
  chunks: AsyncIterable<ChatChunk>;
}

/** Per-request facts gathered along the way; becomes the UsageRecorded event. */
class UsageDraft {
  principal: Principal | undefined;
  model = "";
  provider = "";
  cacheHit = false;
  usage: Usage | undefined;
  firstTokenAt: number | undefined;
  reservationId = "";
  readonly started = performance.now();
  readonly traceId = currentTraceIds().traceId;
  constructor(
    readonly call: {
      requestId: string;
      modelRequested: string;
      user: string;
      endpoint: "chat" | "embeddings";
      signal: AbortSignal;
    },
    readonly stream: boolean,
  ) {}
}

function draftFor(call: ChatCall, stream: boolean): UsageDraft {
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

export interface EmbedCall {
  authorization: string | undefined;
  requestId: string;
  request: EmbedRequest;
  signal: AbortSignal;
}

const ZERO_USAGE: Usage = { inputTokens: 0, outputTokens: 0, cachedTokens: 0 };

/**
 * The chat request path shared by the HTTP and gRPC front doors (design steps 1–7): authenticate, check the model
 * is allowed, refuse keys over a soft budget, rate limit, reserve against hard budgets, check input with the
 * guard, route, filter output through the guard, and publish exactly one usage event whatever the outcome.
 *
 * Everything up to the first chunk happens before `start` resolves, so a failure there becomes a proper error
 * status; a failure after it ends the stream with an error (never a clean finish).
 */
export class ChatFlow {
  /** Tokens held in the rate limiter per request id, corrected when the request ends. */
  private readonly rateHeld = new Map<string, number>();

  constructor(private readonly deps: ChatFlowDeps) {}

  /** Resolves the caller from `Authorization: Bearer <key>`; UNAUTHENTICATED otherwise. */
  async authenticate(authorization: string | undefined): Promise<Principal> {
    const token = bearerToken(authorization);
    if (!token) {
      throw new AppError("UNAUTHENTICATED", "Missing API key: send 'Authorization: Bearer <key>'", {
        reason: "invalid_api_key",
      });
    }
    const hash = hashSecret(token);
    if (this.deps.adminKeyHash && sameHash(hash, this.deps.adminKeyHash)) {
      return { keyId: "admin", name: "admin", team: "", user: "", models: [], rpm: 0, tpm: 0, admin: true };
    }
    const record = await this.deps.keys.byHash(hash);
    if (!record || !sameHash(record.hash, hash)) {
      throw new AppError("UNAUTHENTICATED", "Incorrect API key provided", { reason: "invalid_api_key" });
    }
    return principalOf(record);
  }

  /**
   * Checks that `requested` names a model this key may use; returns its catalog id and entry. `auto` and
   * `auto:<tier>` pass through for the router to resolve (entry undefined).
   */
  resolveModel(
    principal: Principal,
    requested: string,
    kind: "chat" | "embedding",
  ): { id: string; entry: ModelEntry | undefined } {
    const entry = findModel(this.deps.catalog(), requested);
    if (!entry && requested !== "auto" && !requested.startsWith("auto:")) {
      throw new AppError("NOT_FOUND", `The model '${requested}' does not exist`, {
        reason: "model_not_found",
        param: "model",
      });
    }
    if (!modelAllowed(principal, requested, entry?.id)) {
      throw new AppError("PERMISSION_DENIED", `This key is not allowed to use the model '${requested}'`, {
        reason: "model_not_allowed",
        param: "model",
      });
    }
    if (entry && entry.kind !== kind) {
      throw new AppError(
        "INVALID_ARGUMENT",
        `The model '${requested}' is ${entry.kind === "chat" ? "a chat" : "an embedding"} model`,
        {
          param: "model",
        },
      );
    }
    return { id: entry?.id ?? requested, entry };
  }

  context(principal: Principal, call: ChatCall): RequestContext {
    return {
      requestId: call.requestId,
      keyId: principal.keyId,
      team: principal.team,
      user: principal.user || call.request.user,
      priority: 0,
    };
  }

  /** Runs a streamed chat request up to its first chunk; the rest streams through `chunks`. */
  async start(call: ChatCall): Promise<StartedChat> {
    const draft = draftFor(call, true);
    let handedOver = false;
    try {
      const started = await this.begin(call, draft);
      const chunks = this.streamFiltered(started.ctx, started.first, started.rest, draft, call.signal);
      handedOver = true;
      return { principal: draft.principal!, rate: started.rate, model: draft.model, provider: draft.provider, chunks };
    } catch (err) {
      if (!handedOver) this.finish(draft, err);
      throw err;
    }
  }

  /** Runs a chat request to completion and returns the whole (filtered) response. */
  async complete(call: ChatCall): Promise<{ response: ChatResponse; rate: RateInfo | undefined }> {
    const draft = draftFor(call, false);
    try {
      const { ctx, first, rest, rate } = await this.begin(call, draft);
      const acc = new ResponseAccumulator();
      acc.add(first);
      for await (const ev of rest) {
        if (ev.chunk) {
          acc.add(ev.chunk);
          draft.usage = ev.chunk.usage ?? draft.usage;
        }
      }
      draft.usage = acc.usage ?? draft.usage;
      const response = { ...acc.result(draft.provider, draft.cacheHit), id: call.requestId };
      await this.filterWhole(ctx, response, call.signal);
      this.finish(draft);
      return { response, rate };
    } catch (err) {
      this.finish(draft, err);
      throw err;
    }
  }

  /** Requests-per-minute and tokens-per-minute for the key; throws RESOURCE_EXHAUSTED when over. */
  private async limit(principal: Principal, requestId: string, tokens: number): Promise<RateInfo | undefined> {
    if (principal.admin || (principal.rpm <= 0 && principal.tpm <= 0)) return undefined;
    const d = await this.deps.limiter.acquire(principal.keyId, principal, requestId, tokens);
    const rate = {
      limitRequests: principal.rpm,
      remainingRequests: d.remainingRequests,
      limitTokens: principal.tpm,
      remainingTokens: d.remainingTokens,
      resetMs: d.resetMs,
    };
    if (!d.allowed) {
      throw new ResourceExhaustedError(
        `Rate limit reached for ${d.limitedBy === "tokens" ? "tokens" : "requests"} per minute on this key`,
        { retryAfterMs: Math.max(1, d.resetMs), reason: "rate_limit_exceeded" },
      );
    }
    this.rateHeld.set(requestId, tokens);
    return rate;
  }

  /** An embeddings request: authenticate, check the model, rate limit, route, and record usage. */
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
      const principal = await this.authenticate(call.authorization);
      draft.principal = principal;
      draft.model = this.resolveModel(principal, call.request.model, "embedding").id;
      const user = principal.user || call.request.user;
      if (!principal.admin && this.deps.budgets.blocked(principal.keyId, principal.team, user)) {
        throw new BudgetExceededError("This key's budget for the current period is used up");
      }
      const estimate = call.request.input.reduce((n, s) => n + estimateTextTokens(s) + 1, 0);
      const rate = await this.limit(principal, call.requestId, estimate);
      const ctx: RequestContext = {
        requestId: call.requestId,
        keyId: principal.keyId,
        team: principal.team,
        user,
        priority: 0,
      };
      const out = await this.deps.router.embed(ctx, { ...call.request, model: draft.model }, call.signal);
      draft.model = out.model;
      draft.provider = out.provider;
      draft.usage = out.response.usage;
      this.finish(draft);
      return { response: out.response, rate };
    } catch (err) {
      this.finish(draft, err);
      throw err;
    }
  }

  /** Steps 1–5: everything before the first chunk. */
  private async begin(call: ChatCall, draft: UsageDraft) {
    const principal = await this.authenticate(call.authorization);
    draft.principal = principal;
    const request = call.request;
    const { id: modelId, entry } = this.resolveModel(principal, request.model, "chat");
    draft.model = modelId;
    const { budgets } = this.deps;
    const user = principal.user || request.user;
    if (!principal.admin && budgets.blocked(principal.keyId, principal.team, user)) {
      throw new BudgetExceededError("This key's budget for the current period is used up");
    }
    const inputEstimate = estimateMessageTokens(request.messages);
    const maxOutput = request.maxTokens ?? entry?.max_output_tokens ?? 4096;
    const rate = await this.limit(principal, call.requestId, inputEstimate + maxOutput);
    if (!principal.admin && budgets.hasHard(principal.keyId, principal.team, user)) {
      draft.reservationId = await this.deps.cost.reserve({
        requestId: call.requestId,
        keyId: principal.keyId,
        team: principal.team,
        user,
        model: modelId,
        inputTokens: inputEstimate,
        maxOutputTokens: maxOutput,
      });
    }
    const ctx = this.context(principal, call);
    const verdict = await this.deps.guard.checkInput(ctx, modelId, request.messages, call.signal);
    if (verdict.action === "block") {
      throw new AppError(
        "INVALID_ARGUMENT",
        `The request was blocked by the content policy (${verdict.ruleIds.join(", ")})`,
        {
          reason: "content_policy_violation",
        },
      );
    }
    const routed = verdict.action === "redact" ? { ...request, messages: verdict.messages } : request;
    const rest = this.deps.router.route(ctx, routed, call.signal)[Symbol.asyncIterator]();
    for (;;) {
      const next = await rest.next();
      if (next.done) throw new AppError("UNAVAILABLE", "The model returned no output", { origin: "upstream" });
      const ev = next.value;
      if (ev.route) {
        draft.model = ev.route.model;
        draft.provider = ev.route.provider;
        draft.cacheHit = ev.route.cacheHit;
      }
      if (ev.chunk) {
        if (ev.chunk.usage) draft.usage = ev.chunk.usage;
        if (ev.chunk.choices.length > 0) draft.firstTokenAt = performance.now();
        return { ctx, first: ev.chunk, rest: { [Symbol.asyncIterator]: () => rest }, rate };
      }
    }
  }

  /**
   * Pipes chunks through the guard's output filter: text goes to the guard and comes back (possibly held back a
   * little, possibly redacted) through the release callback; role, tool-call and finish deltas keep their order
   * relative to the text because a finish waits for the guard to flush that choice.
   */
  private streamFiltered(
    ctx: RequestContext,
    first: ChatChunk,
    rest: AsyncIterable<{ chunk?: ChatChunk }>,
    draft: UsageDraft,
    signal: AbortSignal,
  ): AsyncIterable<ChatChunk> {
    const out = new AsyncQueue<ChatChunk>();
    // The response id is the request's own (a cached answer replays another request's chunk ids).
    const meta = { id: draft.call.requestId, created: first.created, model: first.model };
    const textChunk = (index: number, content: string): ChatChunk => ({
      ...meta,
      choices: [
        {
          index,
          role: Role.ROLE_UNSPECIFIED,
          content,
          toolCalls: [],
          finishReason: FinishReason.FINISH_REASON_UNSPECIFIED,
          refusal: "",
        },
      ],
      usage: undefined,
    });
    const stop = new AbortController();
    const onAbort = () => stop.abort();
    signal.addEventListener("abort", onAbort, { once: true });
    let blocked = false;
    const filter = this.deps.guard.filterOutput(
      ctx,
      (r) => {
        if (r.text) out.push(textChunk(r.index, r.text));
        if (r.blocked) blocked = true;
      },
      stop.signal,
    );
    let finalUsage: ChatChunk | undefined;
    const handle = async (chunk: ChatChunk) => {
      if (chunk.usage) {
        draft.usage = chunk.usage;
        finalUsage = chunk;
      }
      if (chunk.choices.length === 0) return;
      draft.firstTokenAt ??= performance.now();
      const passthrough: ChatDelta[] = [];
      for (const d of chunk.choices) {
        if (d.content) filter.write(d.index, d.content);
        const finished = d.finishReason !== FinishReason.FINISH_REASON_UNSPECIFIED;
        if (d.role !== Role.ROLE_UNSPECIFIED || d.toolCalls.length > 0 || d.refusal) {
          passthrough.push({ ...d, content: "", finishReason: FinishReason.FINISH_REASON_UNSPECIFIED });
        }
        if (finished) {
          if (passthrough.length > 0) out.push({ ...meta, choices: passthrough.splice(0), usage: undefined });
          const rest = await filter.flush(d.index);
          if (rest.text) out.push(textChunk(d.index, rest.text));
          blocked ||= rest.blocked;
          out.push({
            ...meta,
            choices: [
              {
                index: d.index,
                role: Role.ROLE_UNSPECIFIED,
                content: "",
                toolCalls: [],
                refusal: "",
                finishReason: blocked ? FinishReason.FINISH_REASON_CONTENT_FILTER : d.finishReason,
              },
            ],
            usage: undefined,
          });
        }
      }
      if (passthrough.length > 0) out.push({ ...meta, choices: passthrough, usage: undefined });
    };
    const pump = async () => {
      try {
        await handle(first);
        for await (const ev of rest) {
          if (blocked) break;
          if (ev.chunk) await handle(ev.chunk);
        }
        if (finalUsage) out.push({ ...meta, choices: [], usage: finalUsage.usage });
        out.end();
        this.finish(draft);
      } catch (err) {
        out.fail(err);
        this.finish(draft, err);
      } finally {
        filter.close();
        signal.removeEventListener("abort", onAbort);
      }
    };
    void pump();
    return out;
  }

  /** Filters each choice's whole text with one guard call (non-streamed responses). */
  private async filterWhole(ctx: RequestContext, response: ChatResponse, signal: AbortSignal): Promise<void> {
    const texts = response.choices
      .filter((c) => c.message?.content)
      .map((c) => ({ index: c.index, text: c.message!.content }));
    if (texts.length === 0) return;
    const filtered = await this.deps.guard.filterText(ctx, texts, signal);
    for (const f of filtered) {
      const choice = response.choices.find((c) => c.index === f.index);
      if (!choice?.message) continue;
      choice.message.content = f.text;
      if (f.blocked) choice.finishReason = FinishReason.FINISH_REASON_CONTENT_FILTER;
    }
  }

  /** Step 7 and the rate-limit correction: exactly one usage event per request, whatever its outcome. */
  private finish(draft: UsageDraft, err?: unknown): void {
    const e = err === undefined ? undefined : toAppError(err);
    const status = !e
      ? "ok"
      : e.reason === "content_policy_violation"
        ? "blocked"
        : e.code === "CANCELLED" || draft.call.signal.aborted
          ? "cancelled"
          : "error";
    const usage = draft.usage ?? ZERO_USAGE;
    const p = draft.principal;
    const event: UsageRecorded = {
      requestId: draft.call.requestId,
      timestamp: new Date().toISOString(),
      keyId: p?.keyId ?? "",
      team: p?.team ?? "",
      user: p?.user || draft.call.user,
      modelRequested: draft.call.modelRequested,
      model: draft.model,
      provider: draft.provider,
      inputTokens: usage.inputTokens,
      outputTokens: usage.outputTokens,
      cachedTokens: usage.cachedTokens,
      cacheHit: draft.cacheHit,
      status,
      errorCode: e ? (e.reason ?? e.code) : "",
      latencyMs: performance.now() - draft.started,
      ttftMs: draft.firstTokenAt === undefined ? 0 : draft.firstTokenAt - draft.started,
      traceId: draft.traceId,
      endpoint: draft.call.endpoint,
      stream: draft.stream,
      reservationId: draft.reservationId,
    };
    this.deps.usage.record(event);
    const held = this.rateHeld.get(draft.call.requestId);
    if (held !== undefined && p) {
      this.rateHeld.delete(draft.call.requestId);
      this.deps.limiter
        .settle(p.keyId, draft.call.requestId, held, usage.inputTokens + usage.outputTokens)
        .catch((error: unknown) => this.deps.logger.warn({ err: error }, "rate-limit correction failed"));
    }
  }
}
