import { commonEnv, env } from "@tokenmesh/runtime";
import { z } from "zod";

/** The guard's environment; the only reader of process.env in this service. */
export const GuardConfigSchema = z.object({
  ...commonEnv,
  NATS_URL: env.url("nats://127.0.0.1:4222", ["nats:", "tls:"]),
  /** The router, through which the deep tier calls guard models from the catalog. */
  ROUTER_ADDR: env.address("127.0.0.1:50053"),
  GUARD_HOST: env.host(),
  GUARD_GRPC_PORT: env.port(50052),
  GUARD_OPS_PORT: env.port(9102),
  MESH_CONFIG: z.string().min(1).default("config/mesh.yaml"),
});

export type GuardConfig = z.infer<typeof GuardConfigSchema>;

/**
 * Reads a secret by the env var name a policy gives (`guard.deep.moderation.api_key_env`), per call, so a rotated
 * key in a restarted pod's environment is picked up; never logged.
 */
export function readSecret(name: string): string | undefined {
  return process.env[name];
}
