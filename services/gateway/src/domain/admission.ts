import { BudgetExceededError, ResourceExhaustedError } from "@tokenmesh/runtime";
import type { Logger } from "@tokenmesh/telemetry";
import { type ConcurrencyLease, type ConcurrencyLimiter, limitsFor, limitsOf } from "./concurrency.js";
import type { Principal } from "./keys.js";
import type { Budgets, CatalogView, Cost, OpenHolds, RateLimiter } from "./ports.js";
import type { PriorityName } from "./priority.js";

/** Rate-limit state for OpenAI's `x-ratelimit-*` headers. */
export interface RateInfo {
  limitRequests: number;
  remainingRequests: number;
  limitTokens: number;
  remainingTokens: number;
  resetMs: number;
}

/** What admission needs to know of a request before it runs. */
export interface AdmissionRequest {
  /** The server-minted request id: the rate-limit member and the reservation's key. */
  requestId: string;
  /** The user the request is billed to (the key's, or the request's `user` field). */
  user: string;
  /** The catalog model the hold is priced at. */
  model: string;
  /** Other models the request may end up on (fallbacks, an `auto` tier): the hold covers the priciest. */
  candidateModels: string[];
  /** Estimated input tokens, held in the tokens-per-minute limit until real usage corrects it. */
  inputTokens: number;
  /** An upper bound of the input tokens, for the hard-budget hold (which must never be low). */
  inputTokenBound: number;
  /** Output tokens held in the rate limit. */
  maxOutputTokens: number;
  /** The request's own output cap for the hold; 0 lets each model's cap apply. */
  holdOutputTokens: number;
  /**
   * The catalog id whose `max_concurrent` applies: the requested model resolved (not set for `auto`, which the router
   * resolves later; fallbacks do not take slots of their own).
   */
  limitModel?: string | undefined;
  /** The class the request runs at (priority.ts `effectivePriority`); default interactive. */
  priority?: PriorityName;
  /** Aborts a wait for a concurrency slot (the client left). */
  signal?: AbortSignal;
  /** When the caller stops waiting (epoch ms, e.g. a gRPC deadline); the queue's `max_wait_ms` caps it. */
  deadlineAt?: number | undefined;
}

/** What admission granted; `settle` gives it back when the request ends. */
export interface Admitted {
  rate: RateInfo | undefined;
  /** The hard-budget hold, "" when none was needed. */
  reservationId: string;
  /** Tokens held in the rate limiter, corrected by `settle`. */
  heldTokens: number | undefined;
  /** Concurrency slots (key, team, model limits) held until `release`. */
  slots?: ConcurrencyLease | undefined;
  /** The class the request runs at (interactive when the request said nothing). */
  priority: PriorityName;
}

/**
 * Design steps 2–3 for every endpoint (chat, streaming, embeddings): refuse a scope over its soft budget, apply the
 * key's requests- and tokens-per-minute limits (one atomic Redis script, exact across replicas), wait for a slot of
 * every concurrency limit of the key, its team and the model (concurrency.ts; no Redis when none is configured),
 * and hold the worst case against hard budgets. The admin key passes untouched. Whoever admits must `release` the
 * request's slots once it ends (usage-recorder.ts does, on every ending).
 */
export class Admission {
  constructor(
    private readonly deps: {
      limiter: RateLimiter;
      budgets: Budgets;
      cost: Cost;
      logger: Logger;
      /** Concurrency limits; without it (or a catalog) none applies. */
      concurrency?: ConcurrencyLimiter | undefined;
      catalog?: CatalogView;
      /**
       * Where this replica records its open hard-budget holds, so that they are settled if it dies before
       * reporting them (none: a dead replica's holds wait for cost's reservation timeout).
       */
      holds?: OpenHolds | undefined;
    },
  ) {}

  /** Throws BudgetExceededError or RESOURCE_EXHAUSTED (with `retryAfterMs`) when the request may not run. */
  async admit(principal: Principal, req: AdmissionRequest): Promise<Admitted> {
    const priority = req.priority ?? "interactive";
    if (principal.admin) return { rate: undefined, reservationId: "", heldTokens: undefined, priority };
    const { budgets } = this.deps;
    if (budgets.blocked(principal.keyId, principal.team, req.user)) {
      throw new BudgetExceededError("This key's budget for the current period is used up");
    }
    const tokens = req.inputTokens + req.maxOutputTokens;
    // The hard-scope lookup (a Redis read) overlaps the rate limiter's round trip.
    const hard = budgets.hasHard(principal.keyId, principal.team, req.user);
    hard.catch(() => undefined);
    const rate = await this.limit(principal, req.requestId, tokens);
    const admitted: Admitted = {
      rate,
      reservationId: "",
      heldTokens: rate === undefined ? undefined : tokens,
      priority,
    };
    try {
      admitted.slots = await this.slots(principal, req);
    } catch (err) {
      // Never ran: it used none of the tokens it held.
      this.settle(principal, req.requestId, admitted, 0);
      throw err;
    }
    try {
      if (await hard) {
        // Recorded under the request id (cost's contract: the hold's id) before Reserve is sent: a replica killed at
        // any moment after cost took the hold leaves it on record. Started alongside Reserve, the record could still
        // be in the Redis client's pipeline when cost already held, and a kill -9 then left a hold nobody settles
        // (seen once in the fault suite). Forgotten if nothing was held.
        await this.recordHold(principal, req, req.requestId);
        try {
          admitted.reservationId = await this.reserve(principal, req, admitted);
        } finally {
          if (admitted.reservationId !== req.requestId) this.deps.holds?.close(req.requestId, undefined);
        }
        if (admitted.reservationId && admitted.reservationId !== req.requestId) {
          await this.recordHold(principal, req, admitted.reservationId);
        }
      }
    } catch (err) {
      this.release(admitted);
      throw err;
    }
    return admitted;
  }

  /**
   * Forgets the request's hard-budget hold in this replica's open holds once its usage event (`stored`) is stored;
   * call it after handing the event to the sink.
   */
  holdReported(admitted: Admitted, stored: void | Promise<void>): void {
    if (admitted.reservationId && this.deps.holds) this.deps.holds.close(admitted.reservationId, stored);
  }

  /**
   * Recorded before the request proceeds to routing, so a replica killed after this point leaves a trace another
   * replica settles (a settling event for a hold that was never taken is a no-op at cost). A failed write (Redis down) is logged and the request goes on: refusing it would turn a Redis
   * blip into errors, and the only loss is that a hold taken during the blip by a replica that also dies waits for
   * cost's reservation timeout, as before.
   */
  private async recordHold(principal: Principal, req: AdmissionRequest, reservationId: string): Promise<void> {
    if (!this.deps.holds) return;
    try {
      await this.deps.holds.open({
        reservationId,
        requestId: req.requestId,
        keyId: principal.keyId,
        team: principal.team,
        user: req.user,
        modelRequested: req.model,
      });
    } catch (err) {
      this.deps.logger.warn({ err, request_id: req.requestId }, "open hold not recorded");
    }
  }

  /** Gives the request's concurrency slots back (idempotent); the next waiter in line gets them. */
  release(admitted: Admitted): void {
    const slots = admitted.slots;
    admitted.slots = undefined;
    slots?.release();
  }

  private async slots(principal: Principal, req: AdmissionRequest): Promise<ConcurrencyLease | undefined> {
    const { concurrency, catalog } = this.deps;
    if (concurrency === undefined || catalog === undefined) return undefined;
    const c = catalog();
    const config = limitsOf(c);
    const model = req.limitModel === undefined ? undefined : c.models.find((m) => m.id === req.limitModel);
    const limits = limitsFor(principal, model, config);
    if (limits.length === 0) return undefined;
    const untilDeadline = req.deadlineAt === undefined ? Number.POSITIVE_INFINITY : req.deadlineAt - Date.now();
    return concurrency.acquire({
      requestId: req.requestId,
      limits,
      priority: req.priority ?? "interactive",
      model: req.limitModel ?? req.model,
      queue: config.queue,
      maxWaitMs: Math.max(0, Math.min(config.queue.maxWaitMs, untilDeadline)),
      signal: req.signal,
    });
  }

  private async reserve(principal: Principal, req: AdmissionRequest, admitted: Admitted): Promise<string> {
    try {
      return await this.deps.cost.reserve({
        requestId: req.requestId,
        keyId: principal.keyId,
        team: principal.team,
        user: req.user,
        model: req.model,
        candidateModels: req.candidateModels,
        inputTokens: req.inputTokenBound,
        maxOutputTokens: req.holdOutputTokens,
      });
    } catch (err) {
      // Refused (or cost unreachable): the request never runs, so it uses none of the tokens it held.
      this.settle(principal, req.requestId, admitted, 0);
      throw err;
    }
  }

  /** Corrects the tokens held in the rate limiter to what the request used (best effort, logged on failure). */
  settle(principal: Principal, requestId: string, admitted: Admitted, usedTokens: number): void {
    if (admitted.heldTokens === undefined) return;
    const held = admitted.heldTokens;
    admitted.heldTokens = undefined;
    this.deps.limiter
      .settle(principal.keyId, requestId, held, usedTokens)
      .catch((error: unknown) => this.deps.logger.warn({ err: error }, "rate-limit correction failed"));
  }

  private async limit(principal: Principal, requestId: string, tokens: number): Promise<RateInfo | undefined> {
    if (principal.rpm <= 0 && principal.tpm <= 0) return undefined;
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
    return rate;
  }
}
