import { z } from "zod";

const Price = z
  .object({
    input_per_mtok: z.number().nonnegative(),
    output_per_mtok: z.number().nonnegative(),
    cached_input_per_mtok: z.number().nonnegative().optional(),
  })
  .strict();

const Kind = z.enum(["chat", "embedding"]);

/**
 * Hedged requests (router): when an attempt on this model has produced no first token after `after_ms`, or after
 * the model's recent `after_percentile` time to first token (shared by router replicas), a second attempt starts
 * on the same model or on `to`; the first to produce a token wins and the other is cancelled. With both set,
 * `after_ms` is used until enough latency samples exist for the percentile. Both attempts are billed.
 */
const Hedge = z
  .object({
    after_ms: z.number().int().positive().optional(),
    after_percentile: z.number().min(1).max(99.9).optional(),
    /** The catalog id of the model the extra attempt goes to (default: this model). */
    to: z.string().optional(),
    /** Extra attempts at most (each after the same wait since the previous one). */
    max: z.number().int().min(1).max(3).default(1),
  })
  .strict()
  .refine((h) => h.after_ms !== undefined || h.after_percentile !== undefined, {
    message: "hedge needs after_ms or after_percentile",
  });

const common = {
  id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:/-]*$/, "model ids are letters, digits and . _ : / -"),
  /** Other names clients may use for this model. */
  aliases: z.array(z.string().min(1)).default([]),
  kind: Kind.default("chat"),
  context_window: z.number().int().positive().default(8192),
  max_output_tokens: z.number().int().positive().default(4096),
  price: Price.default({ input_per_mtok: 0, output_per_mtok: 0 }),
  /** The `auto` tier this model belongs to (router issue). */
  tier: z.string().optional(),
  /** Catalog ids tried in order when this model fails retryably (router issue). */
  fallbacks: z.array(z.string()).default([]),
  owned_by: z.string().optional(),
  /**
   * Whether the router's exact cache may answer one tenant with another tenant's stored answer for this model. Off by
   * default: entries are scoped to the team (or the key where there is no team).
   */
  shared_cache: z.boolean().default(false),
  /** Hedged requests for this model (router issue); chat models only. */
  hedge: Hedge.optional(),
  /**
   * Requests of this model running at once across every gateway replica (admission, exact through Redis); more wait
   * in the gateway's fair queue. Unset: no limit.
   */
  max_concurrent: z.number().int().positive().optional(),
};

const LocalModel = z
  .object({
    ...common,
    engine: z.literal("local"),
    /** A GGUF path (relative to the catalog file) or `hf:<user>/<repo>/<file>.gguf`. */
    source: z.string().min(1),
    /** Concurrent sequences decoded together in one context (continuous batching). */
    slots: z.number().int().min(1).max(64).default(4),
    /** Requests that may wait for a slot; beyond it, RESOURCE_EXHAUSTED. */
    queue_size: z.number().int().min(0).default(64),
    /** "auto" offloads as many layers as fit when a GPU is present. */
    gpu_layers: z.union([z.literal("auto"), z.literal("max"), z.number().int().min(0)]).default("auto"),
    /** CPU threads for the engine; 0 lets node-llama-cpp choose. */
    threads: z.number().int().min(0).default(0),
    /**
     * Once a stream's first token is out, send its text at most this often (ms), several tokens per message: fewer
     * gRPC messages per token for the service, a few ms of extra inter-token latency for the reader (vLLM's
     * `stream_interval` idea, in time). 0 sends every token as soon as it is decoded.
     */
    stream_interval_ms: z.number().int().min(0).max(1000).default(0),
  })
  .strict();

const upstream = {
  base_url: z.string().url(),
  /** Name of the env var holding the provider key (never the key itself). */
  api_key_env: z
    .string()
    .regex(/^[A-Z_][A-Z0-9_]*$/)
    .optional(),
  upstream_model: z.string().min(1),
  /** Per-attempt timeout for the whole upstream call, in ms. */
  timeout_ms: z.number().int().positive().default(120_000),
  /** Extra headers sent to the provider (e.g. OpenRouter's HTTP-Referer). */
  headers: z.record(z.string(), z.string()).default({}),
};

const OpenAIModel = z.object({ ...common, ...upstream, engine: z.literal("openai") }).strict();

const AnthropicModel = z
  .object({
    ...common,
    ...upstream,
    base_url: z.string().url().default("https://api.anthropic.com"),
    engine: z.literal("anthropic"),
    anthropic_version: z.string().default("2023-06-01"),
  })
  .strict();

export const ModelEntrySchema = z.discriminatedUnion("engine", [LocalModel, OpenAIModel, AnthropicModel]);

export const CatalogSchema = z
  .object({
    models: z.array(ModelEntrySchema).min(1),
    /** Sections owned by other services (routes, guard, limits, budgets, auth): validated by their owners. */
    routes: z.record(z.string(), z.unknown()).optional(),
    guard: z.record(z.string(), z.unknown()).optional(),
    limits: z.record(z.string(), z.unknown()).optional(),
    budgets: z.record(z.string(), z.unknown()).optional(),
    /** The gateway's sign-in options (`auth.jwt`); never secrets, only issuers, audiences and public keys. */
    auth: z.record(z.string(), z.unknown()).optional(),
  })
  .strict()
  .superRefine((catalog, ctx) => {
    const seen = new Map<string, string>();
    catalog.models.forEach((m, i) => {
      for (const name of [m.id, ...m.aliases]) {
        const owner = seen.get(name);
        if (owner !== undefined) {
          ctx.addIssue({
            code: "custom",
            path: ["models", i, name === m.id ? "id" : "aliases"],
            message: `"${name}" is already used by model "${owner}"`,
          });
        }
        seen.set(name, m.id);
      }
    });
    const ids = new Set(catalog.models.map((m) => m.id));
    catalog.models.forEach((m, i) => {
      for (const f of m.fallbacks) {
        if (!ids.has(f))
          ctx.addIssue({ code: "custom", path: ["models", i, "fallbacks"], message: `unknown model "${f}"` });
      }
      if (m.hedge?.to !== undefined && !ids.has(m.hedge.to))
        ctx.addIssue({ code: "custom", path: ["models", i, "hedge", "to"], message: `unknown model "${m.hedge.to}"` });
    });
  });

export type Catalog = z.infer<typeof CatalogSchema>;
export type ModelEntry = z.infer<typeof ModelEntrySchema>;
export type LocalModelEntry = Extract<ModelEntry, { engine: "local" }>;
export type OpenAIModelEntry = Extract<ModelEntry, { engine: "openai" }>;
export type AnthropicModelEntry = Extract<ModelEntry, { engine: "anthropic" }>;
export type ModelPrice = z.infer<typeof Price>;
export type HedgeConfig = z.infer<typeof Hedge>;
