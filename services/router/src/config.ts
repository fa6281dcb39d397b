import { commonEnv, env } from "@tokenmesh/runtime";
import { z } from "zod";

/** The router's environment; the only reader of process.env in this service. */
export const RouterConfigSchema = z.object({
  ...commonEnv,
  NATS_URL: env.url("nats://127.0.0.1:4222", ["nats:", "tls:"]),
  REDIS_URL: env.url("redis://127.0.0.1:6379", ["redis:", "rediss:"]),
  INFERENCE_ADDR: env.address("127.0.0.1:50054"),
  /**
   * Calls of local models share up to this many long-lived streams to inference (InferenceService.GenerateStream),
   * each call on them with its own deadline, cancellation, flow control and trace; 0: a gRPC call of its own per
   * call (Generate).
   */
  ROUTER_INFERENCE_STREAMS: z.coerce.number().int().min(0).max(64).default(2),
  ROUTER_HOST: env.host(),
  ROUTER_GRPC_PORT: env.port(50053),
  ROUTER_OPS_PORT: env.port(9103),
  MESH_CONFIG: z.string().min(1).default("config/mesh.yaml"),
  /** Prefix of the router's Redis keys (breaker state, exact cache), so deployments or tests can share one Redis. */
  ROUTER_REDIS_PREFIX: z.string().min(1).default("tokenmesh:router:"),
  /** Most concurrent connections per provider origin; further calls queue in the pool. */
  ROUTER_UPSTREAM_CONNECTIONS: z.coerce.number().int().min(1).default(128),
  /** How long an idle keep-alive connection to a provider is kept (providers close theirs at ~60 s or later). */
  ROUTER_UPSTREAM_KEEPALIVE_MS: env.duration(30_000),
  /** TCP + TLS connect timeout to a provider. The whole call is bounded by the model's `timeout_ms`. */
  ROUTER_UPSTREAM_CONNECT_TIMEOUT_MS: env.duration(10_000),
  /**
   * The semantic cache's store (used only when the catalog enables `routes.semantic_cache`): `postgres://…` or
   * `postgresql://…` for a PostgreSQL server with pgvector (compose, Kubernetes; shared by every replica);
   * `memory://` (the default; also when empty) for an embedded PGlite in memory; `file://<dir>` for an embedded
   * PGlite persisted in a directory (`npm start` uses `file://<repo>/.tokenmesh/semantic-cache`). An embedded
   * store belongs to one process: run one router replica with it.
   */
  ROUTER_SEMANTIC_CACHE_URL: z.preprocess(
    (v) => (v === "" ? undefined : v),
    z
      .string()
      .default("memory://")
      .refine((v) => /^(postgres(ql)?:\/\/.+|memory:\/\/|file:\/\/.+)$/.test(v), {
        message: "expected postgres://…, postgresql://…, memory:// or file://<directory>",
      }),
  ),
  /**
   * The longest a served-usage report waits to be published with others as one `llm.usage.served.v2` message. Longer
   * batches cost the bus and the ledger less per request; a router killed (not stopped) loses the reports of this
   * window, which matters only for requests whose gateway died too.
   */
  ROUTER_USAGE_FLUSH_MS: z.coerce.number().int().min(1).max(1_000).default(20),
  /** Most connections to the semantic cache's PostgreSQL server. */
  ROUTER_SEMANTIC_CACHE_POOL_SIZE: z.coerce.number().int().min(1).max(200).default(10),
});

export type RouterConfig = z.infer<typeof RouterConfigSchema>;

/**
 * Reads a provider key by the env var name the catalog gives (`api_key_env`). The names come from the catalog,
 * which may change on reload, so keys cannot be parsed at start-up: they are looked up per call (a rotated key in a
 * restarted pod's environment is picked up) and never logged. Empty values count as missing.
 */
export function readSecret(name: string): string | undefined {
  const value = process.env[name];
  return value === undefined || value === "" ? undefined : value;
}
