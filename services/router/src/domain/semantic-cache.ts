import { hash } from "node:crypto";
import { z } from "zod";
import { CACHE_METADATA_KEY, type CacheableRequest, canonicalJson } from "./cache.js";

/**
 * The semantic cache: answers a chat request from a stored answer to a request that means nearly the same, found
 * by the cosine similarity of their embeddings (PostgreSQL + pgvector, shared by every router replica). Off by
 * default. As the catalog's `routes:` section documents it (values are the defaults):
 *
 * ```yaml
 * routes:
 *   semantic_cache:
 *     enabled: false
 *     embedding_model: local-embed  # a catalog model of kind embedding (required when enabled), local or remote
 *     threshold: 0.95              # the least cosine similarity served from the cache (0 < t ≤ 1)
 *     ttl_s: 3600                  # how long a stored answer is served (1 s to 30 days)
 *     max_entries: 10000           # the store keeps at most this many answers; the oldest go first
 *     scope: team                  # team (the key where there is no team) | key | global: who shares answers
 *     timeout_ms: 150              # embedding + lookup budget; past it the request goes to the model (a miss)
 *     max_entry_bytes: 262144      # larger answers are not stored
 *     models: []                   # the resolved chat models it applies to; empty: all
 * ```
 *
 * Unlike the exact cache it applies to non-deterministic requests too (temperature > 0): that is its point. The
 * exact cache, when enabled, is checked first. `metadata: { cache: "no" | "refresh" }` steers it as it does the
 * exact cache.
 */
export const SemanticCacheSchema = z
  .object({
    enabled: z.boolean().default(false),
    embedding_model: z.string().min(1).optional(),
    threshold: z.number().gt(0).max(1).default(0.95),
    ttl_s: z
      .number()
      .int()
      .min(1)
      .max(30 * 24 * 3600)
      .default(3600),
    max_entries: z.number().int().min(1).max(100_000_000).default(10_000),
    scope: z.enum(["team", "key", "global"]).default("team"),
    timeout_ms: z.number().int().min(1).max(60_000).default(150),
    max_entry_bytes: z.number().int().min(1).default(262_144),
    models: z.array(z.string().min(1)).default([]),
  })
  .strict()
  .refine((s) => !s.enabled || s.embedding_model !== undefined, {
    message: "embedding_model is required when the semantic cache is enabled",
    path: ["embedding_model"],
  });

/** Who shares stored answers: a team (or a key without a team), one key, or everyone. */
export type SemanticScope = "team" | "key" | "global";

/** The semantic cache's validated settings (see `routes.semantic_cache`). */
export interface SemanticCachePolicy {
  enabled: boolean;
  /** The catalog id of the embedding model; set whenever `enabled` is. */
  embeddingModel: string | undefined;
  /** The least cosine similarity served from the cache. */
  threshold: number;
  ttlMs: number;
  /** The most answers the store keeps (all scopes and models together); the oldest are evicted first. */
  maxEntries: number;
  scope: SemanticScope;
  /** Budget of one lookup (embedding + nearest-neighbour query); past it the lookup is a miss. */
  timeoutMs: number;
  maxEntryBytes: number;
  /** The resolved chat models the cache applies to; empty: all. */
  models: readonly string[];
}

/** The policy when `routes.semantic_cache` is absent. */
export const SEMANTIC_CACHE_OFF: SemanticCachePolicy = toSemanticPolicy(SemanticCacheSchema.parse({}));

/** Converts the validated `routes.semantic_cache` section to the policy the router works with. */
export function toSemanticPolicy(section: z.infer<typeof SemanticCacheSchema>): SemanticCachePolicy {
  return {
    enabled: section.enabled,
    embeddingModel: section.embedding_model,
    threshold: section.threshold,
    ttlMs: section.ttl_s * 1000,
    maxEntries: section.max_entries,
    scope: section.scope,
    timeoutMs: section.timeout_ms,
    maxEntryBytes: section.max_entry_bytes,
    models: section.models,
  };
}

/**
 * The problems of `policy` against the catalog's models (empty when none): the embedding model must be a catalog
 * model of kind embedding, and every listed chat model a catalog model of kind chat.
 */
export function semanticPolicyProblems(
  policy: SemanticCachePolicy,
  models: readonly { id: string; kind?: string | undefined }[],
): string[] {
  const problems: string[] = [];
  const kindOf = new Map(models.map((m) => [m.id, m.kind ?? "chat"]));
  const embed = policy.embeddingModel;
  if (embed !== undefined) {
    const kind = kindOf.get(embed);
    if (kind === undefined) problems.push(`routes.semantic_cache.embedding_model: unknown model "${embed}"`);
    else if (kind !== "embedding") {
      problems.push(`routes.semantic_cache.embedding_model: "${embed}" is not an embedding model`);
    }
  }
  for (const id of policy.models) {
    const kind = kindOf.get(id);
    if (kind === undefined) problems.push(`routes.semantic_cache.models: unknown model "${id}"`);
    else if (kind !== "chat") problems.push(`routes.semantic_cache.models: "${id}" is not a chat model`);
  }
  return problems;
}

/** A chat message as the semantic cache reads it (plain fields of the protocol's ChatMessage). */
export interface SemanticMessage {
  /** 1 system, 2 user, 3 assistant, 4 tool, 5 developer (the protocol's Role). */
  role: number;
  content: string;
  parts: readonly { text?: string | undefined; imageUrl?: unknown }[];
  toolCalls: readonly unknown[];
}

/** The parts of a chat request the semantic cache looks at. */
export interface SemanticRequest extends Omit<CacheableRequest, "messages"> {
  messages: readonly SemanticMessage[];
}

const ROLE_NAMES: Readonly<Record<number, string>> = {
  1: "system",
  2: "user",
  3: "assistant",
  4: "tool",
  5: "developer",
};
const isInstruction = (m: SemanticMessage) => m.role === 1 || m.role === 5;

/**
 * What the semantic cache does for one request (as {@link CacheMode} for the exact cache):
 * - `off`: disabled, or the resolved model is not among `models`;
 * - `bypass`: opted out (`cache: "no"`), or not a plain-text conversation: an image, a tool call or a tool result
 *   in it (their meaning is not in the text an embedding sees), or no user text at all;
 * - `lookup`: served from a close stored answer, the fresh one stored on a miss;
 * - `refresh`: `cache: "refresh"`: never served from the cache, the fresh answer stored.
 *
 * Temperature and seed do not matter: close requests get a stored answer whatever their sampling settings.
 */
export type SemanticMode = "off" | "bypass" | "lookup" | "refresh";

/** Decides {@link SemanticMode} for `request` on the resolved chat model `modelId`. */
export function semanticMode(policy: SemanticCachePolicy, request: SemanticRequest, modelId: string): SemanticMode {
  if (!policy.enabled || policy.embeddingModel === undefined) return "off";
  if (policy.models.length > 0 && !policy.models.includes(modelId)) return "off";
  const wish = request.metadata[CACHE_METADATA_KEY]?.trim().toLowerCase();
  if (wish === "no") return "bypass";
  let userText = false;
  for (const m of request.messages) {
    if (m.role === 4 || m.toolCalls.length > 0) return "bypass";
    if (m.parts.some((p) => p.imageUrl !== undefined)) return "bypass";
    if (m.role === 2 && messageText(m).trim() !== "") userText = true;
  }
  if (!userText) return "bypass";
  return wish === "refresh" ? "refresh" : "lookup";
}

/**
 * The scope an answer is stored and looked up under, from the caller's identity: `team:<team>` (scope team with a
 * team), `key:<key id>` (scope key, or team without a team), `global`. Undefined when the scope needs an identity
 * the request does not carry: such a request neither reads nor writes the cache, so answers never leak between
 * callers the scope means to keep apart.
 */
export function semanticScope(scope: SemanticScope, caller: { keyId: string; team: string }): string | undefined {
  if (scope === "global") return "global";
  if (scope === "team" && caller.team !== "") return `team:${caller.team}`;
  if (caller.keyId !== "") return `key:${caller.keyId}`;
  return undefined;
}

// Bumped whenever the bucket's input or the embedded text changes, so old entries are never matched.
const BUCKET_VERSION = 1;

/**
 * The bucket a request's answer is stored and looked up in: the hex SHA-256 of the embedding model, the catalog
 * model that answers, the scope, and everything outside the conversation's meaning that shapes the answer and must
 * therefore match exactly: the system and developer messages, tools, tool_choice, parallel_tool_calls,
 * response_format, max_tokens, stop, n. Sampling settings (temperature, top_p, seed, penalties), `user`,
 * `metadata` and `stream` are left out. Only entries of one bucket are compared by similarity.
 */
export function semanticBucket(
  embeddingModel: string,
  modelId: string,
  scope: string,
  request: SemanticRequest,
): string {
  const shape = {
    v: BUCKET_VERSION,
    embeddingModel,
    model: modelId,
    scope,
    instructions: request.messages.filter(isInstruction).map((m) => [m.role, messageText(m)]),
    tools: request.tools,
    toolChoice: request.toolChoice,
    parallelToolCalls: request.parallelToolCalls,
    responseFormat: request.responseFormat,
    maxTokens: request.maxTokens,
    stop: request.stop,
    n: request.n === 0 ? 1 : request.n,
  };
  return hash("sha256", canonicalJson(shape), "hex");
}

/**
 * The text that is embedded: the conversation without its system and developer messages (those are matched
 * exactly through the bucket, so a long shared system prompt cannot make different questions look alike). A
 * single user turn is its text alone; a longer conversation is one `role: text` line per message.
 */
export function conversationText(request: SemanticRequest): string {
  const turns = request.messages.filter((m) => !isInstruction(m));
  if (turns.length === 1) return messageText(turns[0]!);
  return turns.map((m) => `${ROLE_NAMES[m.role] ?? "user"}: ${messageText(m)}`).join("\n");
}

function messageText(m: SemanticMessage): string {
  return m.parts.length > 0 ? m.parts.map((p) => p.text ?? "").join("") : m.content;
}

/** How one semantic lookup ended; the `result` label of the lookup metric. */
export type SemanticLookupResult = "hit" | "miss" | "error" | "timeout" | "bypass";

/** A stored answer found close enough: the answer and how close its request was (cosine similarity). */
export interface SemanticHit<Answer> {
  similarity: number;
  answer: Answer;
}

/**
 * The outcome of a lookup: a hit, or why there is none. `similarity` is the nearest stored request's, when one
 * was found (a miss below the threshold has it too).
 */
export type SemanticLookup<Answer> =
  | { result: "hit"; similarity: number; answer: Answer }
  | { result: "miss"; similarity?: number | undefined }
  | { result: "error" | "timeout" };

/** Whether the nearest neighbour found, if any, is close enough to serve under `threshold`. */
export function judgeNearest<Answer>(
  nearest: SemanticHit<Answer> | undefined,
  threshold: number,
): SemanticLookup<Answer> {
  if (nearest === undefined) return { result: "miss" };
  if (nearest.similarity >= threshold) {
    return { result: "hit", similarity: nearest.similarity, answer: nearest.answer };
  }
  return { result: "miss", similarity: nearest.similarity };
}

/** One stored answer, as the semantic store keeps it. */
export interface SemanticEntry {
  /** {@link semanticBucket} of the request under the model that answered. */
  bucket: string;
  /** The catalog id of the model that answered. */
  model: string;
  /** {@link semanticScope}, kept so an operator can find or delete a scope's entries. */
  scope: string;
  /** The embedding of the request's {@link conversationText}. */
  embedding: readonly number[];
  /** The stored answer (JSON), replayed as it is. */
  answer: unknown;
  /** Unix milliseconds. */
  createdAt: number;
  expiresAt: number;
}

/**
 * The port of the semantic cache's store. Implementations may throw (the caller bounds every call in time and
 * treats a failure as a miss); they must compare only entries of one bucket with the same number of dimensions.
 */
export interface SemanticStore {
  /** Creates what the store needs (idempotent; safe to run from several replicas at once). */
  init(): Promise<void>;
  /** The entry of `bucket` nearest to `embedding` by cosine similarity that has not expired at `now`. */
  nearest(
    bucket: string,
    embedding: readonly number[],
    now: number,
  ): Promise<{ similarity: number; model: string; answer: unknown } | undefined>;
  insert(entry: SemanticEntry): Promise<void>;
  /** Deletes entries expired at `now`, then the oldest beyond `maxEntries`; says how many went for each reason. */
  trim(maxEntries: number, now: number): Promise<{ expired: number; evicted: number }>;
  /** How many entries the store holds (expired ones not yet trimmed included). */
  count(): Promise<number>;
  close(): Promise<void>;
}
