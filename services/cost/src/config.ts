import { commonEnv, env } from "@tokenmesh/runtime";
import { z } from "zod";

/** The cost service's environment; the only reader of process.env in this service. */
export const CostConfigSchema = z.object({
  ...commonEnv,
  NATS_URL: env.url("nats://127.0.0.1:4222", ["nats:", "tls:"]),
  REDIS_URL: env.url("redis://127.0.0.1:6379", ["redis:", "rediss:"]),
  COST_HOST: env.host(),
  COST_GRPC_PORT: env.port(50055),
  COST_OPS_PORT: env.port(9105),
  MESH_CONFIG: z.string().min(1).default("config/mesh.yaml"),
  /** Prefix of every Redis key the ledger writes; use a hash tag (`{cost}:`) on Redis Cluster. */
  COST_REDIS_PREFIX: z.string().min(1).default("cost:"),
  /** Durable consumer of llm.usage.recorded.v1, shared by every cost replica. */
  COST_CONSUMER_NAME: z
    .string()
    .regex(/^[A-Za-z0-9_-]+$/)
    .default("cost-ledger"),
  /** Usage events handled at once by one replica (they are recorded in batches). */
  COST_CONSUMER_CONCURRENCY: z.coerce.number().int().min(1).max(4096).default(512),
  /**
   * Usage events are pulled in batches: a partly filled batch waits this long (ms) for the next pull, so that cost and
   * NATS wake once per batch instead of once per event. It delays the ledger by at most this much. 0: each event is
   * delivered as it is stored (JetStream's continuous pull).
   */
  COST_CONSUMER_PULL_MS: z.coerce.number().int().min(0).max(1_000).default(50),
  /** Most usage events recorded by one Redis script call. */
  COST_RECORD_BATCH: z.coerce.number().int().min(1).max(2048).default(256),
  /** How long a usage event waits for others to share its ledger script call (ms; 0: same event-loop turn only). */
  COST_RECORD_LINGER_MS: z.coerce.number().int().min(0).max(1_000).default(5),
  /** A reservation whose usage never arrives is released after this long (longer than any request). */
  COST_RESERVATION_TIMEOUT_MS: env.duration(15 * 60_000),
  /** How often expired reservations are released and the held gauge refreshed. */
  COST_SWEEP_INTERVAL_MS: env.duration(15_000),
  /** How long per-day usage totals are kept in Redis. */
  COST_LEDGER_RETENTION_DAYS: z.coerce.number().int().min(1).default(400),
});

export type CostConfig = z.infer<typeof CostConfigSchema>;
