import { commonEnv, env } from "@tokenmesh/runtime";
import { z } from "zod";

/** The router's environment; the only reader of process.env in this service. */
export const RouterConfigSchema = z.object({
  ...commonEnv,
  NATS_URL: env.url("nats://127.0.0.1:4222", ["nats:", "tls:"]),
  REDIS_URL: env.url("redis://127.0.0.1:6379", ["redis:", "rediss:"]),
  INFERENCE_ADDR: env.address("127.0.0.1:50054"),
  ROUTER_HOST: env.host(),
  ROUTER_GRPC_PORT: env.port(50053),
  ROUTER_OPS_PORT: env.port(9103),
  MESH_CONFIG: z.string().min(1).default("config/mesh.yaml"),
  /** Prefix of the router's Redis keys (breaker state, exact cache), so deployments or tests can share one Redis. */
  ROUTER_REDIS_PREFIX: z.string().min(1).default("tokenmesh:router:"),
});

export type RouterConfig = z.infer<typeof RouterConfigSchema>;
