import { ChatChunk } from "@tokenmesh/proto/common/v1/chat";
import type { Logger } from "@tokenmesh/telemetry";
import { AnswerCompletion, type AnswerRecorder, type CachedAnswer, type RecordOutcome } from "../domain/cache.js";
import {
  conversationText,
  judgeNearest,
  type SemanticCachePolicy,
  type SemanticLookup,
  type SemanticLookupResult,
  type SemanticRequest,
  type SemanticStore,
  semanticBucket,
  semanticMode,
  semanticScope,
} from "../domain/semantic-cache.js";
import { routerMetrics } from "../metrics.js";

/** Embeds one text with the policy's embedding model; rejects on failure, and when `signal` aborts. */
export type Embedder = (modelId: string, text: string, signal: AbortSignal) => Promise<number[]>;

/** Options of {@link SemanticCache}. */
export interface SemanticCacheOptions {
  /** The clock entries' creation and expiry are read from (Unix ms); tests inject one. */
  now?: () => number;
  /** After the store fails or is slow, requests skip it for this long (a miss at once, counted as error). */
  backoffMs?: number;
  /** Expired and surplus entries are deleted at most this often (after writes, and on a timer). */
  trimIntervalMs?: number;
}

// The stored answer: {"v":1,"chunks":[<ChatChunk as proto3 JSON>, ...]}, the same chunks the exact cache keeps.
const ANSWER_VERSION = 1;

/** One request's use of the semantic cache: its lookup and the recording of its fresh answer. */
export interface SemanticRequestCache {
  /** "lookup": call {@link lookup} first; "refresh": go straight to the model and store the answer. */
  readonly mode: "lookup" | "refresh";
  /**
   * The nearest stored answer of the resolved model, if close enough. Never throws, and settles within the
   * policy's `timeout_ms` of the request's start (`timeout` past it): the cache can cost a request no more.
   */
  lookup(): Promise<SemanticLookup<CachedAnswer<ChatChunk>>>;
  /** Records `model`'s answer, stored in the background once it ends complete (with the request's embedding). */
  record(model: string): AnswerRecorder<ChatChunk>;
}

/**
 * The semantic cache: embeddings through the catalog's embedding model, answers in a {@link SemanticStore}
 * (PostgreSQL + pgvector, shared by every router replica). Never fails a request: an embedding model or a store
 * that is down or slow is a miss within the policy's time budget, and a store that failed is skipped for
 * `backoffMs` so requests stop paying for it. Writes and trims run in the background ({@link settled}).
 */
export class SemanticCache {
  private readonly now: () => number;
  private readonly backoffMs: number;
  private readonly trimIntervalMs: number;
  private readonly pending = new Set<Promise<unknown>>();
  private initialized: Promise<void> | undefined;
  private storeDownUntil = 0;
  private trimTimer: NodeJS.Timeout | undefined;
  private trimRunning: Promise<void> | undefined;
  private lastTrim = Number.NEGATIVE_INFINITY;
  private lastPolicy: SemanticCachePolicy | undefined;
  private closed = false;

  constructor(
    readonly store: SemanticStore,
    private readonly embed: Embedder,
    private readonly logger: Logger,
    options: SemanticCacheOptions = {},
  ) {
    this.now = options.now ?? Date.now;
    this.backoffMs = options.backoffMs ?? 2_000;
    this.trimIntervalMs = options.trimIntervalMs ?? 250;
  }

  /**
   * Starts the cache's work on a request, or returns undefined when it does nothing for it (disabled, not
   * eligible, no scope, or the store is backing off; the last three are counted). The embedding starts at once.
   */
  open(
    policy: SemanticCachePolicy,
    request: SemanticRequest,
    caller: { keyId: string; team: string },
    resolvedModel: string,
  ): SemanticRequestCache | undefined {
    const mode = semanticMode(policy, request, resolvedModel);
    if (mode === "off") return undefined;
    const scope = semanticScope(policy.scope, caller);
    if (mode === "bypass" || scope === undefined) {
      count("bypass");
      return undefined;
    }
    if (this.closed || performance.now() < this.storeDownUntil) {
      count("error");
      return undefined;
    }
    this.lastPolicy = policy;
    const embeddingModel = policy.embeddingModel as string;
    const started = performance.now();
    const budget = new AbortController();
    // One deadline for the embedding and the query after it, counted from here (the lookup ends it early).
    const timer = setTimeout(() => budget.abort(new Error(`over the ${policy.timeoutMs} ms budget`)), policy.timeoutMs);
    timer.unref();
    const embedding = this.embed(embeddingModel, conversationText(request), budget.signal);
    // Settled whatever happens, so a failure nobody waits for is never unhandled.
    const vector: Promise<number[] | undefined> = embedding.then(
      (v) => v,
      () => undefined,
    );
    const bucketOf = (model: string) => semanticBucket(embeddingModel, model, scope, request);
    return {
      mode,
      lookup: () =>
        this.lookup(policy, embedding, bucketOf(resolvedModel), budget.signal, started).finally(() =>
          clearTimeout(timer),
        ),
      record: (model) => this.record(policy, model, scope, bucketOf(model), vector),
    };
  }

  /**
   * Creates the store's schema; called at start when the cache is enabled, and on first use otherwise. A failure
   * is logged and retried on a later use (after the back-off).
   */
  ready(): Promise<void> {
    this.initialized ??= this.store.init().catch((err: Error) => {
      this.initialized = undefined;
      throw err;
    });
    return this.initialized;
  }

  /** {@link ready} at start-up: logs a failure (and backs off) instead of throwing; the router serves anyway. */
  async warmUp(): Promise<void> {
    try {
      await this.ready();
    } catch (err) {
      this.storeFailed(err as Error, "semantic cache store unavailable at start; requests skip it for a while");
    }
  }

  /** Deletes expired entries every 30 s even without writes (once the cache has been used). */
  startTrimming(): void {
    this.trimTimer ??= setInterval(() => {
      if (this.lastPolicy !== undefined) this.scheduleTrim(this.lastPolicy);
    }, 30_000);
    this.trimTimer.unref();
  }

  /** Resolves once every write and trim started so far has ended; for tests and orderly shutdowns. */
  async settled(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }

  /**
   * Stops trimming, lets pending writes end and closes the store, abandoning both after `graceMs` (a store that
   * does not answer must not hold the router's shutdown to its deadline).
   */
  async close(graceMs = 1_000): Promise<void> {
    this.closed = true;
    clearInterval(this.trimTimer);
    let timer: NodeJS.Timeout | undefined;
    const gone = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, graceMs);
    });
    const closing = (async () => {
      await this.settled();
      await this.store.close();
    })();
    closing.catch((err: Error) => this.logger.warn({ err: err.message }, "semantic cache store did not close"));
    await Promise.race([closing.catch(() => undefined), gone]);
    clearTimeout(timer);
  }

  private async lookup(
    policy: SemanticCachePolicy,
    embedding: Promise<number[]>,
    bucket: string,
    budget: AbortSignal,
    started: number,
  ): Promise<SemanticLookup<CachedAnswer<ChatChunk>>> {
    let phase = "embedding" as "embedding" | "store";
    const work = (async (): Promise<SemanticLookup<CachedAnswer<ChatChunk>>> => {
      const vector = await embedding;
      phase = "store";
      await this.ready();
      const nearest = await this.store.nearest(bucket, vector, this.now());
      const answer = nearest && decodeAnswer(nearest.model, nearest.answer);
      if (nearest !== undefined && answer === undefined) {
        this.logger.warn({ bucket }, "unreadable semantic cache entry; treating it as a miss");
        return { result: "miss" };
      }
      return judgeNearest(nearest && answer && { similarity: nearest.similarity, answer }, policy.threshold);
    })();
    const overBudget = new Promise<"timeout">((resolve) => {
      if (budget.aborted) resolve("timeout");
      else budget.addEventListener("abort", () => resolve("timeout"), { once: true });
    });
    let outcome: SemanticLookup<CachedAnswer<ChatChunk>>;
    try {
      const first = await Promise.race([work, overBudget]);
      outcome = first === "timeout" ? { result: "timeout" } : first;
    } catch (err) {
      // An embedding aborted by the budget is a timeout, whatever error the model's client made of it.
      outcome = budget.aborted ? { result: "timeout" } : { result: "error" };
      if (outcome.result === "error") {
        if (phase === "store") this.storeFailed(err as Error, "semantic cache lookup failed; treating it as a miss");
        else
          this.logger.warn({ err: (err as Error).message }, "semantic cache embedding failed; treating it as a miss");
      }
    }
    // The nearest-neighbour query is not cancellable: leave it to finish, and keep later requests off a slow store.
    if (outcome.result === "timeout" && phase === "store") {
      this.storeFailed(new Error(`no answer within ${policy.timeoutMs} ms`), "semantic cache store is slow");
    }
    work.catch(() => undefined);
    count(outcome.result, (performance.now() - started) / 1000);
    if ("similarity" in outcome && outcome.similarity !== undefined) {
      routerMetrics.semanticSimilarity.observe(outcome.similarity);
    }
    return outcome;
  }

  private record(
    policy: SemanticCachePolicy,
    model: string,
    scope: string,
    bucket: string,
    vector: Promise<number[] | undefined>,
  ): AnswerRecorder<ChatChunk> {
    const completion = new AnswerCompletion();
    let chunks: unknown[] | undefined = [];
    let bytes = 20;
    return {
      add: (chunk) => {
        completion.observe(chunk);
        if (chunks === undefined) return;
        const json = ChatChunk.toJSON(chunk);
        bytes += Buffer.byteLength(JSON.stringify(json)) + 1;
        // Past the limit the answer will never be stored: drop what was kept rather than hold it to the end.
        if (bytes > policy.maxEntryBytes) chunks = undefined;
        else chunks.push(json);
      },
      finish: (): RecordOutcome => {
        if (!completion.complete) return "incomplete";
        if (chunks === undefined) return "too_large";
        const answer = { v: ANSWER_VERSION, chunks };
        this.track(this.persist(policy, { model, scope, bucket, answer }, vector));
        return "stored";
      },
    };
  }

  private async persist(
    policy: SemanticCachePolicy,
    entry: { model: string; scope: string; bucket: string; answer: unknown },
    vector: Promise<number[] | undefined>,
  ): Promise<void> {
    const embedding = await vector;
    if (embedding === undefined || performance.now() < this.storeDownUntil) {
      routerMetrics.semanticStoreFailures.inc();
      this.logger.debug("no embedding in time, or the store is backing off; the answer was not stored");
      return;
    }
    try {
      await this.ready();
      const now = this.now();
      await this.store.insert({ ...entry, embedding, createdAt: now, expiresAt: now + policy.ttlMs });
    } catch (err) {
      routerMetrics.semanticStoreFailures.inc();
      this.storeFailed(err as Error, "semantic cache store failed; the answer was not stored");
      return;
    }
    this.scheduleTrim(policy);
  }

  /** Runs a trim now, or once `trimIntervalMs` has passed since the last one; at most one runs at a time. */
  private scheduleTrim(policy: SemanticCachePolicy): void {
    this.lastPolicy = policy;
    if (this.trimRunning !== undefined) return;
    const wait = Math.max(0, this.lastTrim + this.trimIntervalMs - performance.now());
    this.trimRunning = (async () => {
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      this.lastTrim = performance.now();
      const latest = this.lastPolicy ?? policy;
      try {
        const { expired, evicted } = await this.store.trim(latest.maxEntries, this.now());
        if (expired > 0) routerMetrics.semanticEvictions.inc({ reason: "expired" }, expired);
        if (evicted > 0) routerMetrics.semanticEvictions.inc({ reason: "size" }, evicted);
      } catch (err) {
        this.logger.warn({ err: (err as Error).message }, "semantic cache trim failed");
      } finally {
        this.trimRunning = undefined;
      }
    })();
    this.track(this.trimRunning);
  }

  private storeFailed(err: Error, message: string): void {
    this.storeDownUntil = performance.now() + this.backoffMs;
    this.logger.warn({ err: err.message, backoffMs: this.backoffMs }, message);
  }

  private track(promise: Promise<unknown>): void {
    const tracked = promise.finally(() => this.pending.delete(tracked));
    tracked.catch(() => undefined);
    this.pending.add(tracked);
  }
}

function count(result: SemanticLookupResult, seconds?: number): void {
  routerMetrics.semanticLookups.inc({ result });
  if (seconds !== undefined) routerMetrics.semanticLookupDuration.observe({ result }, seconds);
}

/** The stored answer, or undefined when the entry is not in the format this version writes. */
function decodeAnswer(model: string, raw: unknown): CachedAnswer<ChatChunk> | undefined {
  const entry = raw as { v?: unknown; chunks?: unknown } | null;
  if (entry?.v !== ANSWER_VERSION || !Array.isArray(entry.chunks)) return undefined;
  try {
    return { model, chunks: entry.chunks.map((c) => ChatChunk.fromJSON(c)) };
  } catch {
    return undefined;
  }
}
