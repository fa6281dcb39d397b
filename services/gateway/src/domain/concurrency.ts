import type { Catalog } from "@tokenmesh/catalog";
import { z } from "zod";
import type { Principal } from "./keys.js";
import type { PriorityName } from "./priority.js";

/**
 * The catalog's `limits` section as the gateway reads it (other fields are left to their owners):
 *
 * ```yaml
 * limits:
 *   teams:
 *     research: { max_concurrent: 8 }    # requests of the team's keys running at once, every replica together
 *   queue:
 *     max_wait_ms: 30000                 # longest wait for a concurrency slot (a gRPC deadline may cut it shorter)
 *     max_depth: 256                     # waiters per limit; one more is refused at once
 *     aging_ms: 10000                    # a waiting request gains one class per this long
 *     lease_ms: 15000                    # a holder's slots come back this long after its replica stops refreshing
 * ```
 */
const LimitsSection = z
  .object({
    teams: z
      .record(z.string().min(1), z.object({ max_concurrent: z.number().int().positive().optional() }).passthrough())
      .default({}),
    queue: z.unknown().optional(),
  })
  .passthrough();

const QueueSection = z
  .object({
    max_wait_ms: z.number().int().min(0).max(600_000).default(30_000),
    max_depth: z.number().int().min(0).default(256),
    aging_ms: z.number().int().positive().default(10_000),
    lease_ms: z.number().int().min(1_000).max(300_000).default(15_000),
  })
  .strict();

export interface QueueSettings {
  maxWaitMs: number;
  maxDepth: number;
  agingMs: number;
  leaseMs: number;
}

export interface ConcurrencyConfig {
  /** Team name → its limit. */
  teams: Map<string, number>;
  queue: QueueSettings;
}

/** Reads `limits` (undefined: no team limits, default queue settings); throws a ZodError for an invalid section. */
export function compileLimits(section: unknown): ConcurrencyConfig {
  const parsed = LimitsSection.parse(section ?? {});
  const teams = new Map<string, number>();
  for (const [team, t] of Object.entries(parsed.teams)) if (t.max_concurrent) teams.set(team, t.max_concurrent);
  const q = QueueSection.parse(parsed.queue ?? {});
  return {
    teams,
    queue: { maxWaitMs: q.max_wait_ms, maxDepth: q.max_depth, agingMs: q.aging_ms, leaseMs: q.lease_ms },
  };
}

const compiled = new WeakMap<Catalog, ConcurrencyConfig>();

/** `compileLimits` of a catalog, once per catalog object (a reload is a new object). */
export function limitsOf(catalog: Catalog): ConcurrencyConfig {
  let c = compiled.get(catalog);
  if (c === undefined) {
    c = compileLimits(catalog.limits);
    compiled.set(catalog, c);
  }
  return c;
}

/** One concurrency limit a request must hold a slot of. */
export interface LimitSpec {
  /** `key:<id>`, `team:<name>` or `model:<id>`. */
  id: string;
  /** Slots of the limit across every replica. */
  cap: number;
  /**
   * Whose turn it is in this limit's queue: for a model, the team (else the key); for a team, the key; for a key,
   * one line (classes and arrival order only).
   */
  tenant: string;
}

/**
 * The limits a request holds, in the order they are taken (key, team, model: narrowest first, the same order for
 * every request, so waiting never deadlocks). Empty when none is configured: admission then needs no Redis at all.
 */
export function limitsFor(
  principal: Principal,
  model: { id: string; max_concurrent?: number | undefined } | undefined,
  config: ConcurrencyConfig,
): LimitSpec[] {
  const out: LimitSpec[] = [];
  const keyTenant = `key:${principal.keyId}`;
  if (principal.maxConcurrent) out.push({ id: `key:${principal.keyId}`, cap: principal.maxConcurrent, tenant: "" });
  const teamCap = principal.team ? config.teams.get(principal.team) : undefined;
  if (teamCap) out.push({ id: `team:${principal.team}`, cap: teamCap, tenant: keyTenant });
  if (model?.max_concurrent) {
    out.push({
      id: `model:${model.id}`,
      cap: model.max_concurrent,
      tenant: principal.team ? `team:${principal.team}` : keyTenant,
    });
  }
  return out;
}

/** What the concurrency limiter needs to admit one request. */
export interface ConcurrencyRequest {
  requestId: string;
  limits: LimitSpec[];
  priority: PriorityName;
  /** The model the request was admitted for (metrics). */
  model: string;
  queue: QueueSettings;
  /** The longest this request may wait for its slots (its deadline, capped by `queue.maxWaitMs`). */
  maxWaitMs: number;
  /** Aborts the wait (client gone); a waiter leaves every queue at once. */
  signal: AbortSignal | undefined;
}

/** Slots held by one request; `release` gives them back (idempotent). */
export interface ConcurrencyLease {
  release(): void;
}

/**
 * Concurrency limits exact across replicas (adapters/redis-concurrency.ts). `acquire` resolves once the request
 * holds a slot of every limit; it throws RESOURCE_EXHAUSTED (`concurrency_limit`, with `retryAfterMs`) when a queue
 * is full or the wait runs out, or the signal's reason when the caller left while waiting.
 */
export interface ConcurrencyLimiter {
  acquire(req: ConcurrencyRequest): Promise<ConcurrencyLease>;
}
