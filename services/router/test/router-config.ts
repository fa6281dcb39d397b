import { freePort } from "@tokenmesh/testing";
import { inject } from "vitest";
import { type RouterConfig, RouterConfigSchema } from "../src/config.js";

/**
 * The configuration of a router a test starts in-process: silent, on free ports, with the test run's NATS and Redis
 * and the test's catalog. `inferenceAddr` defaults to a free port nothing listens on (remote models must not need
 * inference); `env` adds or overrides settings.
 */
export async function testRouterConfig(options: {
  catalogPath: string;
  redisPrefix: string;
  inferenceAddr?: string;
  env?: Record<string, string>;
}): Promise<RouterConfig> {
  return RouterConfigSchema.parse({
    LOG_LEVEL: "silent",
    REDIS_URL: inject("redisUrl"),
    NATS_URL: inject("natsUrl"),
    INFERENCE_ADDR: options.inferenceAddr ?? `127.0.0.1:${await freePort()}`,
    ROUTER_HOST: "127.0.0.1",
    ROUTER_GRPC_PORT: "0",
    ROUTER_OPS_PORT: "0",
    MESH_CONFIG: options.catalogPath,
    ROUTER_REDIS_PREFIX: options.redisPrefix,
    ...options.env,
  });
}
