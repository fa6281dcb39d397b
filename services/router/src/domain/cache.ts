import { hash } from "node:crypto";
import type { CachePolicy } from "./routes.js";

/**
 * The parts of a chat request the exact cache looks at: everything that shapes the answer, plus `metadata` (for
 * the per-request `cache` switch). Nested values (messages, tools, …) are compared by their canonical JSON, so
 * two requests decoded from the wire with the same content give the same key whatever their field order.
 */
export interface CacheableRequest {
  messages: readonly unknown[];
  tools: readonly unknown[];
  toolChoice?: unknown;
  parallelToolCalls?: boolean | undefined;
  responseFormat?: unknown;
  temperature?: number | undefined;
  topP?: number | undefined;
  topK?: number | undefined;
  maxTokens?: number | undefined;
  stop: readonly string[];
  seed?: number | undefined;
  /** Number of choices; 0 means 1. */
  n: number;
  presencePenalty?: number | undefined;
  frequencyPenalty?: number | undefined;
  metadata: Readonly<Record<string, string>>;
}

/** The request metadata entry that steers the cache for one request: `"no"` or `"refresh"`. */
export const CACHE_METADATA_KEY = "cache";

/**
 * What the cache does for one request:
 * - `off`: the cache is disabled (nothing is looked up, stored or counted);
 * - `bypass`: not eligible (not deterministic under `deterministic_only`) or opted out with `cache: "no"`;
 * - `lookup`: served from the cache on a hit, stored on a miss;
 * - `refresh`: `cache: "refresh"`, never served from the cache, but the fresh answer replaces the entry.
 */
export type CacheMode = "off" | "bypass" | "lookup" | "refresh";

/**
 * Decides {@link CacheMode} for `request` under `policy`. A request counts as deterministic when its temperature
 * is exactly 0 or it carries a seed; an unset temperature means the provider's default, which is not 0.
 * A `refresh` request that is not eligible is a `bypass` (it is not stored either). Metadata values other than
 * "no" and "refresh" (compared case-insensitively) are ignored.
 */
export function cacheMode(policy: CachePolicy, request: CacheableRequest): CacheMode {
  if (!policy.enabled) return "off";
  const wish = request.metadata[CACHE_METADATA_KEY]?.trim().toLowerCase();
  if (wish === "no") return "bypass";
  if (policy.deterministicOnly && !isDeterministic(request)) return "bypass";
  return wish === "refresh" ? "refresh" : "lookup";
}

/** Whether `request` asks for a reproducible answer: temperature 0, or a seed. */
export function isDeterministic(request: Pick<CacheableRequest, "temperature" | "seed">): boolean {
  return request.temperature === 0 || request.seed !== undefined;
}

// Bumped whenever the key's input or the stored entry's format changes, so old entries are never misread.
const KEY_VERSION = 2;

/**
 * The cache key of `request` on the catalog model `modelId`: the hex SHA-256 of a canonical JSON encoding of the
 * model id and every field that shapes the answer (messages, tools, tool_choice, parallel_tool_calls,
 * response_format, temperature, top_p, top_k, max_tokens, stop, seed, n, presence/frequency penalties).
 *
 * Guarantees: equal for requests that differ only in `user`, `metadata`, `stream`, `stream_options` or the
 * requested name (alias or `auto`) once resolved to the same model; object key order never matters; an unset
 * optional number differs from 0; `n` 0 and 1 are the same.
 */
export function cacheKey(modelId: string, request: CacheableRequest, scope = ""): string {
  const shape = {
    v: KEY_VERSION,
    model: modelId,
    scope,
    messages: request.messages,
    tools: request.tools,
    toolChoice: request.toolChoice,
    parallelToolCalls: request.parallelToolCalls,
    responseFormat: request.responseFormat,
    temperature: request.temperature,
    topP: request.topP,
    topK: request.topK,
    maxTokens: request.maxTokens,
    stop: request.stop,
    seed: request.seed,
    n: request.n === 0 ? 1 : request.n,
    presencePenalty: request.presencePenalty,
    frequencyPenalty: request.frequencyPenalty,
  };
  return hash("sha256", canonicalJson(shape), "hex");
}

/**
 * The tenant an exact-cache entry belongs to: the team, else the key (`""` when the model's answers may be shared
 * across tenants, `shared_cache: true` in the catalog). One team's cached answer is never served to another.
 */
export function cacheScope(context: { team: string; keyId: string } | undefined, shared: boolean): string {
  if (shared) return "";
  if (context?.team) return `team:${context.team}`;
  return `key:${context?.keyId ?? ""}`;
}

/**
 * JSON with object keys sorted at every level and `undefined` members left out (as JSON.stringify does), so equal
 * values always encode to the same text.
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value === null || typeof value !== "object") return value;
  // Uint8Array and the like have no JSON meaning here; keep them as JSON.stringify would see them.
  if (Object.getPrototypeOf(value) !== Object.prototype && Object.getPrototypeOf(value) !== null) return value;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(value).sort()) {
    const v = (value as Record<string, unknown>)[k];
    if (v !== undefined) out[k] = sortKeys(v);
  }
  return out;
}

/** The parts of a streamed chunk the cache needs to know whether an answer ended normally. */
export interface CacheableChunk {
  choices: readonly { index: number; finishReason: number }[];
  usage?: unknown;
}

/**
 * Watches a streamed answer to tell whether it ended normally: at least one choice, every choice seen got a
 * finish reason, and a usage chunk arrived. Only such answers may be stored (a truncated one must never be
 * replayed as if it were whole).
 */
export class AnswerCompletion {
  private readonly open = new Set<number>();
  private readonly finished = new Set<number>();
  private usageSeen = false;

  observe(chunk: CacheableChunk): void {
    for (const choice of chunk.choices) {
      if (choice.finishReason !== 0) {
        this.finished.add(choice.index);
        this.open.delete(choice.index);
      } else if (!this.finished.has(choice.index)) {
        this.open.add(choice.index);
      }
    }
    if (chunk.usage !== undefined) this.usageSeen = true;
  }

  get complete(): boolean {
    return this.usageSeen && this.finished.size > 0 && this.open.size === 0;
  }
}

/** A stored answer: the model that produced it and its chunks in order, the last one carrying usage. */
export interface CachedAnswer<Chunk> {
  model: string;
  chunks: Chunk[];
}

/** How recording an answer ended. */
export type RecordOutcome = "stored" | "incomplete" | "too_large";

/**
 * Collects one answer's chunks while they stream to the caller. `finish` is called only when the stream ended
 * without error or cancellation; it stores the answer when it is complete and small enough, in the background.
 * An abandoned recorder stores nothing.
 */
export interface AnswerRecorder<Chunk> {
  add(chunk: Chunk): void;
  finish(): RecordOutcome;
}

/**
 * The port the router's exact cache goes through. Implementations never throw and never fail a request: an
 * unreachable or slow store reads as a miss, and a failed write is logged and counted.
 */
export interface ResponseCache<Chunk> {
  /** The answer stored under `key`, or undefined (a miss, an unreadable entry, or an unreachable store). */
  lookup(key: string): Promise<CachedAnswer<Chunk> | undefined>;
  /** Starts recording `model`'s answer, to be stored under `key` for `policy.ttlMs` once it ends normally. */
  record(key: string, model: string, policy: Pick<CachePolicy, "ttlMs" | "maxEntryBytes">): AnswerRecorder<Chunk>;
}
