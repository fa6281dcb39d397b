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
});

export type GatewayConfig = z.infer<typeof GatewayConfigSchema>;
