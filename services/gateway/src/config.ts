import { commonEnv, env } from "@tokenmesh/runtime";
import { z } from "zod";

/** The gateway's environment; the only reader of process.env in this service. */
export const GatewayConfigSchema = z.object({
  ...commonEnv,
  NATS_URL: env.url("nats://127.0.0.1:4222", ["nats:", "tls:"]),
  REDIS_URL: env.url("redis://127.0.0.1:6379", ["redis:", "rediss:"]),
  /**
   * The guard service, for its deep tier only (policies with `guard.deep`): the deterministic tier runs in-process,
   * so a request whose policy has no deep tier never calls it.
   */
  GUARD_ADDR: env.address("127.0.0.1:50052"),
  ROUTER_ADDR: env.address("127.0.0.1:50053"),
  /**
   * Chat requests to the router share up to this many long-lived streams (RouterService.RouteStream), each call on
   * them with its own deadline, cancellation, flow control and trace; 0: a gRPC call of its own per request (Route).
   */
  GATEWAY_ROUTER_STREAMS: z.coerce.number().int().min(0).max(64).default(4),
  COST_ADDR: env.address("127.0.0.1:50055"),
  GATEWAY_HOST: env.host(),
  GATEWAY_HTTP_PORT: env.port(8080),
  GATEWAY_GRPC_PORT: env.port(50051),
  /** Largest accepted request body. */
  GATEWAY_BODY_LIMIT_BYTES: z.coerce
    .number()
    .int()
    .positive()
    .default(4 * 1024 * 1024),
  /** Time a client has to send a whole request (headers and body); slower clients get 408 and are closed. */
  GATEWAY_REQUEST_TIMEOUT_MS: z.coerce.number().int().positive().default(30_000),
  /** Time a client has to send the request headers. */
  GATEWAY_HEADERS_TIMEOUT_MS: z.coerce.number().int().positive().default(10_000),
  /** An idle keep-alive connection is closed after this long (keep it above any load balancer's idle timeout). */
  GATEWAY_KEEPALIVE_TIMEOUT_MS: z.coerce.number().int().positive().default(65_000),
  /** Bearer token of the admin API; without it the admin API is disabled. */
  TOKENMESH_ADMIN_KEY: z.string().min(16, "use at least 16 characters").optional(),
  MESH_CONFIG: z.string().min(1).default("config/mesh.yaml"),
  /**
   * A usage event goes to the Redis outbox journal only when JetStream has not acknowledged it within this many ms
   * (0: journal every event). The journal is what republishes events of a replica that died during a NATS outage.
   */
  GATEWAY_OUTBOX_JOURNAL_AFTER_MS: z.coerce.number().int().min(0).max(60_000).default(250),
  /**
   * How long a usage event may wait for others to share its NATS write (0: only until the end of the event-loop
   * turn). Fewer, fuller writes wake NATS and the cost service once per batch instead of once per request.
   */
  GATEWAY_OUTBOX_LINGER_MS: z.coerce.number().int().min(0).max(100).default(5),
  /**
   * Characters of recently checked message texts whose guard findings each replica remembers, per tenant (0: scan
   * every text every time). A conversation resends its history at every turn; remembered texts are not scanned again.
   */
  GATEWAY_GUARD_MEMO_CHARS: z.coerce.number().int().min(0).max(1_000_000_000).default(4_000_000),
  /**
   * A gateway replica whose heartbeat is this old is taken for dead, and its open hard-budget holds are settled by
   * another replica (adapters/open-holds.ts). Keep it well above any expected stall of a live replica.
   */
  GATEWAY_REPLICA_TTL_MS: z.coerce.number().int().min(1_000).max(600_000).default(10_000),
  /** How often each replica looks for dead replicas' open holds. */
  GATEWAY_HOLD_SWEEP_MS: z.coerce.number().int().min(100).max(600_000).default(5_000),
  /** How long a job's record (state, result) is kept after its last change; GET answers 404 afterwards. */
  GATEWAY_JOB_RETENTION_S: z.coerce
    .number()
    .int()
    .positive()
    .default(7 * 24 * 3600),
  /** Jobs this replica runs at once (0: it takes submissions but runs none). */
  GATEWAY_JOB_WORKERS: z.coerce.number().int().min(0).max(1024).default(8),
  /**
   * A running job's lease and JetStream ack wait: a worker that dies mid-job leaves it to another after this long.
   * The running worker renews both every third of it.
   */
  GATEWAY_JOB_LEASE_MS: z.coerce.number().int().min(1_000).max(600_000).default(30_000),
  /** Runs of a job that fails retryably (model unavailable, a limit full) before it is failed. */
  GATEWAY_JOB_MAX_ATTEMPTS: z.coerce.number().int().min(1).max(50).default(3),
  /** Most requests in one `POST /v1/jobs/batch`. */
  GATEWAY_JOB_BATCH_MAX: z.coerce.number().int().min(1).max(10_000).default(100),
  /** Requests of one batch job in flight at once (so the local engine can batch them). */
  GATEWAY_JOB_BATCH_CONCURRENCY: z.coerce.number().int().min(1).max(256).default(8),
  /**
   * Hosts a job's `callback_url` may name: comma-separated `*`, `*.example.com` or exact hosts/IPs. Link-local and
   * cloud metadata addresses are refused whatever it says. The default `*` lets a key holder make the gateway POST to
   * any other host it can reach (loopback and private networks included): list your receivers in production.
   */
  GATEWAY_CALLBACK_ALLOW: z.string().default("*"),
  /** Tries of a callback before it is dead-lettered (`llm.deadletter.v1.llm.jobs.callback.v1`). */
  GATEWAY_CALLBACK_MAX_ATTEMPTS: z.coerce.number().int().min(1).max(50).default(8),
  /** First retry delay of a callback; doubled each try, at most 10 minutes. */
  GATEWAY_CALLBACK_BACKOFF_MS: z.coerce.number().int().min(1).max(600_000).default(1_000),
  /** Time a callback receiver has to answer. */
  GATEWAY_CALLBACK_TIMEOUT_MS: z.coerce.number().int().min(100).max(120_000).default(10_000),
});

export type GatewayConfig = z.infer<typeof GatewayConfigSchema>;
