import { commonEnv, env } from "@tokenmesh/runtime";
import { z } from "zod";

/** The guard's environment; the only reader of process.env in this service. */
export const GuardConfigSchema = z.object({
  ...commonEnv,
  NATS_URL: env.url("nats://127.0.0.1:4222", ["nats:", "tls:"]),
  GUARD_HOST: env.host(),
  GUARD_GRPC_PORT: env.port(50052),
  GUARD_OPS_PORT: env.port(9102),
  MESH_CONFIG: z.string().min(1).default("config/mesh.yaml"),
});

export type GuardConfig = z.infer<typeof GuardConfigSchema>;
