import type { Catalog } from "@tokenmesh/catalog";
import type {
  ChatChunk,
  ChatMessage,
  ChatRequest,
  EmbedRequest,
  EmbedResponse,
  ModelInfo,
} from "@tokenmesh/proto/common/v1/chat";
import type { RequestContext } from "@tokenmesh/proto/common/v1/context";
import type { UsageRecorded } from "@tokenmesh/proto/events/v1/events";
import type { AdminRecord, AuditEntry, AuditQuery } from "./admin-access.js";
import type { JwtAuth } from "./jwt-auth.js";
import type { KeyRecord } from "./keys.js";

/** The ports the gateway's flows need; adapters/ implements them over gRPC, Redis and NATS. */

export interface InputVerdict {
  action: "allow" | "redact" | "block";
  messages: ChatMessage[];
  ruleIds: string[];
  reason: string;
}

/**
 * Which text of a choice a fragment belongs to: its content, its refusal, or the arguments of its tool call `n`
 * (the tool call's own index). The guard redacts each slot of each choice as a text of its own.
 */
export type OutputSlot = "content" | "refusal" | `tool:${number}`;

/** One streaming output filter session (guard FilterOutput). */
export interface OutputFilter {
  /**
   * Sends generated text of a choice, to its content unless `slot` names another slot; released text arrives
   * through `onRelease` tagged with its slot.
   */
  write(index: number, text: string, slot?: OutputSlot): void;
  /**
   * Ends a choice: releases everything held in each of its slots once the guard has answered. The other slots'
   * rest arrives through `onRelease` before the promise resolves; the content's rest is the result's `text`.
   * `blocked` when any slot of the output blocked.
   */
  flush(index: number): Promise<{ text: string; blocked: boolean; ruleIds: string[] }>;
  /** Ends the session. */
  close(): void;
}

export interface OutputRelease {
  index: number;
  /** Absent means the content. */
  slot?: OutputSlot;
  text: string;
  blocked: boolean;
  ruleIds: string[];
}

export interface Guard {
  checkInput(ctx: RequestContext, model: string, messages: ChatMessage[], signal: AbortSignal): Promise<InputVerdict>;
  /**
   * Filters complete texts (one per choice index and slot; no slot means the content) in one call; answers one
   * entry per text, in order, with its index and slot.
   */
  filterText(
    ctx: RequestContext,
    texts: { index: number; slot?: OutputSlot; text: string }[],
    signal: AbortSignal,
  ): Promise<{ index: number; slot?: OutputSlot; text: string; blocked: boolean; ruleIds: string[] }[]>;
  /** Opens an output filter; `onRelease` gets text the guard lets through (possibly held back and later). */
  filterOutput(ctx: RequestContext, onRelease: (r: OutputRelease) => void, signal: AbortSignal): OutputFilter;
}

/** A caller's routing hints (`x-tokenmesh-route`, `x-tokenmesh-speculative`), passed to the router as they are. */
export interface RouteHints {
  prefer?: string;
  speculativeModel?: string;
}

export interface RouteEvent {
  route?: {
    model: string;
    provider: string;
    cacheHit: boolean;
    attempts: number;
    /** Why the router chose the model, e.g. `auto:large score=0.72 signals=code,long`. */
    reason?: string;
    /** A speculative request's upgrade id (its slow answer, fetched later). */
    upgradeId?: string;
    /** Which cache answered when `cacheHit`: "exact" or "semantic" ("" or absent when the model answered). */
    cacheKind?: string;
    /** For a semantic hit: the cosine similarity of the request to the stored one that answered it (0..1). */
    cacheSimilarity?: number;
  };
  chunk?: ChatChunk;
}

export interface Router {
  route(ctx: RequestContext, request: ChatRequest, signal: AbortSignal, hints?: RouteHints): AsyncIterable<RouteEvent>;
  embed(
    ctx: RequestContext,
    request: EmbedRequest,
    signal: AbortSignal,
  ): Promise<{ response: EmbedResponse; model: string; provider: string }>;
  listModels(signal: AbortSignal): Promise<ModelInfo[]>;
}

export interface Cost {
  /** Holds the worst-case cost against hard budgets; returns "" when nothing was held. */
  reserve(input: {
    requestId: string;
    keyId: string;
    team: string;
    user: string;
    model: string;
    inputTokens: number;
    /** 0: each model's own output cap. */
    maxOutputTokens: number;
    /** Other models the request may end up on; the hold covers the priciest. */
    candidateModels: string[];
  }): Promise<string>;
  release(reservationId: string): Promise<void>;
}

export interface Budgets {
  /** Whether a soft budget of the key, its team or user reached 100 % this period. */
  blocked(keyId: string, team: string, user: string): boolean;
  /** Whether any hard budget applies (only then is Reserve called); exact across replicas. */
  hasHard(keyId: string, team: string, user: string): Promise<boolean>;
}

export interface KeyStore {
  create(record: KeyRecord): Promise<void>;
  list(): Promise<KeyRecord[]>;
  get(id: string): Promise<KeyRecord | undefined>;
  revoke(id: string): Promise<boolean>;
  byHash(hash: string): Promise<KeyRecord | undefined>;
}

/** Admin credentials (admin-access.ts), stored like virtual keys: by id and by the SHA-256 of their secret. */
export interface AdminStore {
  create(record: AdminRecord): Promise<void>;
  list(): Promise<AdminRecord[]>;
  get(id: string): Promise<AdminRecord | undefined>;
  /** Deletes a credential; false when it did not exist. Effective on every replica within a second. */
  revoke(id: string): Promise<boolean>;
  byHash(hash: string): Promise<AdminRecord | undefined>;
}

/** The audit trail of admin changes (`llm.audit.v1` on the LLM_AUDIT stream). */
export interface AuditLog {
  /**
   * Publishes one change. Resolves once JetStream stored it or, if that takes too long, once it is safe in the
   * outbox (stored later, exactly once: the request id is its Nats-Msg-Id). Never throws for a NATS outage.
   */
  record(entry: AuditEntry): Promise<void>;
  /** Matching changes, newest first, at most `query.limit`; `truncated` when older events were not scanned. */
  list(query: AuditQuery): Promise<{ events: AuditEntry[]; truncated: boolean }>;
}

/** A bearer JWT whose signature and registered claims checked out, with the `auth.jwt` options that checked it. */
export interface VerifiedJwt {
  claims: Record<string, unknown>;
  config: JwtAuth;
}

/** Verifies bearer JWTs against the catalog's `auth.jwt` (adapters/jwt-verifier.ts, over jose and the JWKS). */
export interface JwtVerifier {
  /** Whether the catalog in force configures JWT sign-in. */
  enabled(): boolean;
  /**
   * Checks the algorithm (asymmetric only), signature, `iss`, `aud`, `exp` (required) and `nbf` within the
   * configured clock skew; throws InvalidTokenError for a token that fails any of them, UNAVAILABLE when no key
   * could be obtained at all (IdP unreachable and nothing cached).
   */
  verify(token: string): Promise<VerifiedJwt>;
}

export interface RateLimiter {
  acquire(
    keyId: string,
    limits: { rpm: number; tpm: number },
    requestId: string,
    estimate: number,
  ): Promise<{
    allowed: boolean;
    limitedBy: string;
    remainingRequests: number;
    remainingTokens: number;
    resetMs: number;
  }>;
  settle(keyId: string, requestId: string, estimate: number, actual: number): Promise<void>;
}

export interface UsageSink {
  /**
   * Accepts a usage event for publishing; never throws for a transient NATS problem (the outbox retries). May return
   * a promise that resolves once the event is stored, and rejects when it never will be (the outbox refused it).
   */
  record(event: UsageRecorded): void | Promise<void>;
}

/** What a usage event needs of a hard-budget hold whose request may outlive its gateway. */
export interface OpenHold {
  /** The hold's id at cost (the request id, by cost's contract). */
  reservationId: string;
  requestId: string;
  keyId: string;
  team: string;
  user: string;
  modelRequested: string;
}

/**
 * The hard-budget holds this replica took and has not yet reported (adapters/open-holds.ts): if the replica dies,
 * another one publishes a usage event for each, which settles it.
 */
export interface OpenHolds {
  /** Records a hold; resolves once it is recorded, rejects when it could not be. */
  open(hold: OpenHold): Promise<void>;
  /** Forgets a hold once `stored` (its request's usage event) resolves; best effort, never throws. */
  close(reservationId: string, stored: void | Promise<void>): void;
}

export type CatalogView = () => Catalog;
