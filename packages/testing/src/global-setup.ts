/**
 * Vitest global setup for integration and end-to-end projects: provides real NATS (JetStream) and Redis once per
 * run (see `provideInfra` for where they come from), as `inject("natsUrl")` / `inject("redisUrl")` in tests and as
 * `TEST_NATS_URL` / `TEST_REDIS_URL` in the environment of processes spawned afterwards. Servers it started are
 * stopped on teardown.
 *
 * Loaded as TypeScript source by the root vitest config, so it imports nothing heavy at module load.
 */
import type { TestProject } from "vitest/node";
import { exportInfraEnv } from "./config.js";
import "./context.js";
import { provideInfra } from "./infra.js";

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const infra = await provideInfra();
  project.provide("natsUrl", infra.natsUrl);
  project.provide("redisUrl", infra.redisUrl);
  const restoreEnv = exportInfraEnv(infra);
  return async () => {
    restoreEnv();
    await infra.stop();
  };
}
