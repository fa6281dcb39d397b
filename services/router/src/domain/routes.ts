import type { Catalog } from "@tokenmesh/catalog";
import { z } from "zod";
import { DEFAULT_WEIGHTS, SIGNALS, type SignalWeights } from "./complexity.js";
import {
  SEMANTIC_CACHE_OFF,
  type SemanticCachePolicy,
  SemanticCacheSchema,
  semanticPolicyProblems,
  toSemanticPolicy,
} from "./semantic-cache.js";

const RetrySchema = z
  .object({
    /** Attempts per candidate model (the first try included). */
    max_attempts: z.number().int().min(1).max(10).default(3),
    base_delay_ms: z.number().int().min(0).default(100),
    max_delay_ms: z.number().int().min(0).default(2_000),
  })
  .strict()
  .refine((r) => r.max_delay_ms >= r.base_delay_ms, {
    message: "max_delay_ms must be at least base_delay_ms",
    path: ["max_delay_ms"],
  });

const BreakerSchema = z
  .object({
    enabled: z.boolean().default(true),
    /** Consecutive retryable failures that open a model's breaker. */
    failure_threshold: z.number().int().min(1).default(5),
    /** How long an open breaker skips the model before one probe is let through. */
    cooldown_ms: z.number().int().min(1).default(30_000),
  })
  .strict();

/**
 * `auto` by complexity and cost (see complexity.ts for the signals). As the catalog documents it:
 *
 * ```yaml
 * routes:
 *   auto:
 *     default_tier: small
 *     tiers: { small: [local-tiny, gpt-mini], large: [gpt-4o, claude-sonnet] }
 *     scoring:
 *       thresholds: { large: 0.5 }      # the lowest score that picks each tier; below all: default_tier
 *       weights: { code: 0.45, long: 0.3 }   # per signal, in [0, 1]; unlisted signals keep their defaults
 * ```
 *
 * Without `scoring`, `auto` keeps its plain meaning: the first ready model of the default tier.
 */
const ScoringSchema = z
  .object({
    thresholds: z.record(z.string().min(1), z.number().gt(0).max(1)),
    weights: z
      .object(Object.fromEntries(SIGNALS.map((s) => [s, z.number().min(0).max(1).optional()])))
      .strict()
      .default({}),
  })
  .strict();

const AutoSchema = z
  .object({
    default_tier: z.string().min(1),
    /** Tier name → catalog model ids, in order of preference. */
    tiers: z.record(z.string().min(1), z.array(z.string().min(1)).min(1)),
    scoring: ScoringSchema.optional(),
  })
  .strict()
  .refine((a) => a.default_tier in a.tiers, { message: "default_tier must name one of tiers", path: ["default_tier"] })
  .refine((a) => Object.keys(a.scoring?.thresholds ?? {}).every((t) => t in a.tiers), {
    message: "every threshold must name one of tiers",
    path: ["scoring", "thresholds"],
  });

/**
 * The exact response cache, shared by every router replica through Redis. Off by default. As the catalog's
 * `routes:` section documents it (values are the defaults):
 *
 * ```yaml
 * routes:
 *   cache:
 *     enabled: false            # exact cache of chat answers in Redis, shared by all router replicas
 *     ttl_s: 300                # how long an answer is served from the cache (1 s to 30 days)
 *     max_entry_bytes: 262144   # larger answers are not stored
 *     deterministic_only: true  # cache only requests with temperature 0 or a seed
 * ```
 *
 * The key is the SHA-256 of the resolved model id and everything in the request that shapes the answer (messages,
 * tools, tool_choice, parallel_tool_calls, response_format, temperature, top_p, max_tokens, stop, seed, n,
 * penalties), never `user`, `metadata` or `stream`, so streamed and non-streamed requests share entries. A request
 * opts out with `metadata: { cache: "no" }` and forces a fresh answer (stored again) with `cache: "refresh"`.
 */
const CacheSchema = z
  .object({
    enabled: z.boolean().default(false),
    ttl_s: z
      .number()
      .int()
      .min(1)
      .max(30 * 24 * 3600)
      .default(300),
    max_entry_bytes: z.number().int().min(1).default(262_144),
    deterministic_only: z.boolean().default(true),
  })
  .strict();

/**
 * The catalog's `routes:` section, owned and validated by the router (the catalog package leaves it opaque).
 * Unknown keys are rejected so a typo never silently falls back to defaults.
 */
export const RoutesSchema = z
  .object({
    auto: AutoSchema.optional(),
    retry: RetrySchema.default({ max_attempts: 3, base_delay_ms: 100, max_delay_ms: 2_000 }),
    breaker: BreakerSchema.default({ enabled: true, failure_threshold: 5, cooldown_ms: 30_000 }),
    cache: CacheSchema.default({ enabled: false, ttl_s: 300, max_entry_bytes: 262_144, deterministic_only: true }),
    /** The semantic cache on pgvector (see semantic-cache.ts); off when absent. */
    semantic_cache: SemanticCacheSchema.optional(),
  })
  .strict();

export type RoutesSection = z.infer<typeof RoutesSchema>;

/** Backoff policy applied to each candidate model. */
export interface RetryPolicy {
  maxAttempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

export interface BreakerPolicy {
  enabled: boolean;
  failureThreshold: number;
  cooldownMs: number;
}

/** The exact response cache's settings (see `routes.cache`). */
export interface CachePolicy {
  enabled: boolean;
  ttlMs: number;
  /** Entries whose serialized size exceeds this are not stored. */
  maxEntryBytes: number;
  /** Cache only requests whose answer should not vary: temperature 0, or a seed. */
  deterministicOnly: boolean;
}

/** How bare `auto` scores a request and maps the score to a tier (`routes.auto.scoring`). */
export interface ScoringPolicy {
  /** Tier → the lowest score that picks it; a score below every threshold picks the default tier. */
  thresholds: ReadonlyMap<string, number>;
  weights: Readonly<SignalWeights>;
}

/** The validated routing configuration the domain works with. */
export interface RouteConfig {
  /** Tier name → model ids in order of preference (from `routes.auto.tiers`, or derived from models' `tier`). */
  tiers: ReadonlyMap<string, readonly string[]>;
  /** The tier `auto` uses; undefined when no tier exists (then `auto` is unknown). */
  defaultTier: string | undefined;
  /** Set when `routes.auto.scoring` is: bare `auto` then picks its tier by the request's complexity. */
  scoring?: ScoringPolicy | undefined;
  retry: RetryPolicy;
  breaker: BreakerPolicy;
  cache: CachePolicy;
  /** The semantic cache's settings (`routes.semantic_cache`; off when absent). */
  semanticCache: SemanticCachePolicy;
}

/** The routes section is invalid; the message lists every problem. */
export class RoutesError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RoutesError";
  }
}

/**
 * Validates `catalog.routes` and returns the routing config. Without `routes.auto`, tiers are derived from the
 * models' `tier` fields in catalog order, and the default tier is the first one met. Tier members must be catalog
 * model ids. Throws RoutesError naming every problem.
 */
export function parseRoutes(catalog: Catalog): RouteConfig {
  const result = RoutesSchema.safeParse(catalog.routes ?? {});
  if (!result.success) {
    const lines = result.error.issues.map((i) => `  - routes.${i.path.join(".")}: ${i.message}`);
    throw new RoutesError(`routes section is invalid:\n${lines.join("\n")}`);
  }
  const section = result.data;
  const ids = new Set(catalog.models.map((m) => m.id));
  const tiers = new Map<string, string[]>();
  let defaultTier: string | undefined;
  if (section.auto) {
    const problems: string[] = [];
    for (const [tier, members] of Object.entries(section.auto.tiers)) {
      for (const id of members) if (!ids.has(id)) problems.push(`  - routes.auto.tiers.${tier}: unknown model "${id}"`);
      tiers.set(tier, [...new Set(members)]);
    }
    if (problems.length > 0) throw new RoutesError(`routes section is invalid:\n${problems.join("\n")}`);
    defaultTier = section.auto.default_tier;
  } else {
    for (const m of catalog.models) {
      if (m.tier === undefined) continue;
      const members = tiers.get(m.tier) ?? [];
      members.push(m.id);
      tiers.set(m.tier, members);
      defaultTier ??= m.tier;
    }
  }
  const semanticCache = section.semantic_cache ? toSemanticPolicy(section.semantic_cache) : SEMANTIC_CACHE_OFF;
  const semanticProblems = semanticPolicyProblems(semanticCache, catalog.models);
  if (semanticProblems.length > 0) {
    throw new RoutesError(`routes section is invalid:\n${semanticProblems.map((p) => `  - ${p}`).join("\n")}`);
  }
  const scoring = section.auto?.scoring;
  return {
    tiers,
    defaultTier,
    scoring:
      scoring === undefined
        ? undefined
        : {
            thresholds: new Map(Object.entries(scoring.thresholds)),
            weights: { ...DEFAULT_WEIGHTS, ...(scoring.weights as Partial<SignalWeights>) },
          },
    retry: {
      maxAttempts: section.retry.max_attempts,
      baseDelayMs: section.retry.base_delay_ms,
      maxDelayMs: section.retry.max_delay_ms,
    },
    breaker: {
      enabled: section.breaker.enabled,
      failureThreshold: section.breaker.failure_threshold,
      cooldownMs: section.breaker.cooldown_ms,
    },
    cache: {
      enabled: section.cache.enabled,
      ttlMs: section.cache.ttl_s * 1000,
      maxEntryBytes: section.cache.max_entry_bytes,
      deterministicOnly: section.cache.deterministic_only,
    },
    semanticCache,
  };
}
