/**
 * The only reader of `process.env` in this package: everything the test harness takes from the environment is
 * parsed here, so `provideInfra` can be given a fake environment in tests.
 */

/** A raw environment, shaped like `process.env`. */
export type RawEnv = Readonly<Record<string, string | undefined>>;

/** What the harness reads from the environment. */
export interface InfraEnv {
  /** An existing NATS server (with JetStream) to use instead of starting one. */
  readonly testNatsUrl: string | undefined;
  /** An existing Redis server to use instead of starting one. */
  readonly testRedisUrl: string | undefined;
  /** The directories of `PATH`, in order. */
  readonly pathDirs: readonly string[];
  /** `DOCKER_HOST`, when set. */
  readonly dockerHost: string | undefined;
  /** Candidate Docker sockets when `DOCKER_HOST` is not set (rootful first, then rootless / Docker Desktop). */
  readonly dockerSockets: readonly string[];
}

/** Parses the harness settings from `source` (default: this process's environment). */
export function readInfraEnv(source: RawEnv = process.env): InfraEnv {
  const dockerSockets = ["/var/run/docker.sock"];
  if (nonEmpty(source.XDG_RUNTIME_DIR)) dockerSockets.push(`${source.XDG_RUNTIME_DIR}/docker.sock`);
  if (nonEmpty(source.HOME)) dockerSockets.push(`${source.HOME}/.docker/run/docker.sock`);
  return {
    testNatsUrl: nonEmpty(source.TEST_NATS_URL),
    testRedisUrl: nonEmpty(source.TEST_REDIS_URL),
    pathDirs: (source.PATH ?? "").split(":").filter((dir) => dir !== ""),
    dockerHost: nonEmpty(source.DOCKER_HOST),
    dockerSockets,
  };
}

/** This process's environment, for children that should inherit it (a copy: callers may extend it freely). */
export function parentEnv(): Record<string, string | undefined> {
  return { ...process.env };
}

/**
 * Publishes the infra URLs as `TEST_NATS_URL` / `TEST_REDIS_URL` for child processes (and nested harnesses,
 * which then reuse these servers instead of starting their own). Returns a function restoring the previous values.
 */
export function exportInfraEnv(urls: { natsUrl: string; redisUrl: string }): () => void {
  const previous = { TEST_NATS_URL: process.env.TEST_NATS_URL, TEST_REDIS_URL: process.env.TEST_REDIS_URL };
  process.env.TEST_NATS_URL = urls.natsUrl;
  process.env.TEST_REDIS_URL = urls.redisUrl;
  return () => {
    for (const [key, value] of Object.entries(previous)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  };
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === "" ? undefined : value.trim();
}
