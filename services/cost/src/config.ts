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
});

export type CostConfig = z.infer<typeof CostConfigSchema>;
