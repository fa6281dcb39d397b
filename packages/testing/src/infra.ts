import { accessSync, constants } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { request as httpRequest } from "node:http";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { type InfraEnv, type RawEnv, readInfraEnv } from "./config.js";
import { freePort } from "./ports.js";
import { type ServiceProcess, ServiceStartError, spawnService } from "./process.js";
import { waitFor } from "./wait.js";

/** A nats-server with JetStream, started by {@link startNatsServer}. */
export interface NatsServerHandle {
  /** `nats://127.0.0.1:<port>`; stays the same across {@link NatsServerHandle.restart}. */
  readonly url: string;
  readonly port: number;
  /** The JetStream store directory; stays the same across restarts. */
  readonly storeDir: string;
  /**
   * Stops the server (SIGTERM, SIGKILL after 5 s) and, if `startNatsServer` created the store directory, removes
   * it. Idempotent.
   */
  stop(): Promise<void>;
  /**
   * Stops the server gracefully and starts it again on the same port with the same store directory, resolving
   * once JetStream answers again. Messages in file-backed streams survive; clients see a disconnect and may
   * reconnect to the same URL. Use it to simulate a NATS outage.
   */
  restart(): Promise<void>;
}

/** Options for {@link startNatsServer}. */
export interface StartNatsServerOptions {
  /** Listen on this port (default: a free one). */
  port?: number;
  /** Keep JetStream data here (default: a new temp directory, removed on `stop()`). */
  storeDir?: string;
  /** The nats-server executable (default: found on PATH, /usr/local/sbin, /usr/local/bin, /usr/sbin, /usr/bin). */
  binary?: string;
  /** How long to wait for the server and JetStream to be ready (default 20 000 ms). */
  startTimeoutMs?: number;
}

/** A redis-server started by {@link startRedisServer}. */
export interface RedisServerHandle {
  /** `redis://127.0.0.1:<port>`; stays the same across {@link RedisServerHandle.restart}. */
  readonly url: string;
  readonly port: number;
  /** Stops the server (SIGTERM, SIGKILL after 5 s) and removes its working directory. Idempotent. */
  stop(): Promise<void>;
  /**
   * Stops the server gracefully (SIGTERM) and starts it again on the same port and working directory, resolving
   * once it answers PING. The data survives only with `persistence: "aof"`; without it the new server is empty.
   * Clients see a disconnect and may reconnect to the same URL. Use it to simulate a Redis outage.
   */
  restart(): Promise<void>;
}

/** Options for {@link startRedisServer}. */
export interface StartRedisServerOptions {
  /** Listen on this port (default: a free one). */
  port?: number;
  /**
   * `"none"` (default): memory only, the fastest for tests. `"aof"`: an append-only file fsynced on every write
   * (`appendfsync always`), so everything a client saw acknowledged survives {@link RedisServerHandle.restart},
   * even a kill -9 — what a ledger that acknowledges events after writing them needs.
   */
  persistence?: "none" | "aof";
  /** The redis-server executable (default: found on PATH, /usr/local/sbin, /usr/local/bin, /usr/sbin, /usr/bin). */
  binary?: string;
  /** How long to wait for PING to answer (default 20 000 ms). */
  startTimeoutMs?: number;
}

/** Where a server for the test run came from. */
export type InfraSource = "env" | "local" | "container";

/** NATS and Redis for a test run, from {@link provideInfra}. */
export interface Infra {
  readonly natsUrl: string;
  readonly redisUrl: string;
  readonly sources: { readonly nats: InfraSource; readonly redis: InfraSource };
  /** Stops the servers this call started (never ones given through the environment). Idempotent. */
  stop(): Promise<void>;
}

/** Options for {@link provideInfra}; the defaults describe the real machine, tests override them. */
export interface ProvideInfraOptions {
  /** The environment to read `TEST_NATS_URL`, `TEST_REDIS_URL`, `PATH` and `DOCKER_HOST` from (default: this process's). */
  env?: RawEnv;
  /** Directories searched after `PATH` for the binaries (default: /usr/local/sbin, /usr/local/bin, /usr/sbin, /usr/bin). */
  binDirs?: readonly string[];
  /** Whether testcontainers may be used: `"auto"` (default) when a Docker daemon answers, `false` never. */
  containers?: "auto" | false;
}

/** Raised by {@link provideInfra} when NATS or Redis cannot be provided; the message says what to install. */
export class InfraUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "InfraUnavailableError";
  }
}

/** Debian puts nats-server in /usr/sbin, which is not on every user's PATH. */
export const DEFAULT_BIN_DIRS: readonly string[] = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin"];

const NATS_IMAGE = "nats:2-alpine";
const REDIS_IMAGE = "redis:7-alpine";
const INSTALL_HINT = "apt-get install nats-server redis-server";
/** Retries when a port from freePort() was taken by someone else before the server bound it. */
const PORT_ATTEMPTS = 3;

/**
 * Starts `nats-server -js` on 127.0.0.1 and resolves once it accepts connections and answers `$JS.API.INFO`.
 * The server is a child of this process; call `stop()` when done (it is SIGKILLed if this process exits first).
 */
export async function startNatsServer(options: StartNatsServerOptions = {}): Promise<NatsServerHandle> {
  const binary = options.binary ?? requireBinary("nats-server");
  const startTimeoutMs = options.startTimeoutMs ?? 20_000;
  const ownsStore = options.storeDir === undefined;
  const storeDir = options.storeDir ?? (await mkdtemp(join(tmpdir(), "tokenmesh-nats-")));

  const launch = async (port: number): Promise<ServiceProcess> => {
    const server = await spawnService({
      name: `nats-server :${port}`,
      cmd: binary,
      args: ["-js", "-a", "127.0.0.1", "-p", String(port), "-sd", storeDir],
      // On a failed bind nats-server logs [FTL] and exits, which fails the wait at once.
      readyPattern: "Server is ready",
      readyTimeoutMs: startTimeoutMs,
    });
    try {
      await waitForJetStream(`nats://127.0.0.1:${port}`, startTimeoutMs);
      return server;
    } catch (err) {
      await server.stop();
      throw err;
    }
  };

  let port: number;
  let server: ServiceProcess;
  try {
    ({ port, server } = await launchOnPort(options.port, launch));
  } catch (err) {
    if (ownsStore) await rm(storeDir, { recursive: true, force: true });
    throw err;
  }

  let stopped: Promise<void> | undefined;
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    stop() {
      stopped ??= (async () => {
        await server.stop();
        if (ownsStore) await rm(storeDir, { recursive: true, force: true });
      })();
      return stopped;
    },
    async restart() {
      if (stopped !== undefined) throw new Error(`nats-server :${port} was stopped; it cannot be restarted`);
      await server.stop();
      // Go listeners set SO_REUSEADDR, so the same port binds again at once despite TIME_WAIT connections.
      server = await launch(port);
    },
  };
}

/** Starts `redis-server` on 127.0.0.1 (without persistence unless asked) and resolves once it answers PING. */
export async function startRedisServer(options: StartRedisServerOptions = {}): Promise<RedisServerHandle> {
  const binary = options.binary ?? requireBinary("redis-server");
  const startTimeoutMs = options.startTimeoutMs ?? 20_000;
  const dir = await mkdtemp(join(tmpdir(), "tokenmesh-redis-"));
  const persistence =
    options.persistence === "aof" ? ["--appendonly", "yes", "--appendfsync", "always"] : ["--appendonly", "no"];

  const launch = async (port: number): Promise<ServiceProcess> => {
    const server = await spawnService({
      name: `redis-server :${port}`,
      cmd: binary,
      args: ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--dir", dir, ...persistence],
      readyPattern: "Ready to accept connections",
      readyTimeoutMs: startTimeoutMs,
    });
    try {
      await waitFor(() => redisAnswers("127.0.0.1", port), {
        timeoutMs: startTimeoutMs,
        description: `redis-server :${port} to answer PING`,
      });
      return server;
    } catch (err) {
      await server.stop();
      throw new ServiceStartError(`redis-server :${port} failed to start. Output:\n${server.output().slice(-4000)}`, {
        cause: err,
      });
    }
  };

  let port: number;
  let server: ServiceProcess;
  try {
    ({ port, server } = await launchOnPort(options.port, launch));
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }

  let stopped: Promise<void> | undefined;
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    stop() {
      stopped ??= (async () => {
        await server.stop();
        await rm(dir, { recursive: true, force: true });
      })();
      return stopped;
    },
    async restart() {
      if (stopped !== undefined) throw new Error(`redis-server :${port} was stopped; it cannot be restarted`);
      await server.stop();
      // redis-server sets SO_REUSEADDR, so the same port binds again at once.
      server = await launch(port);
    },
  };
}

/**
 * Provides NATS (with JetStream) and Redis for a test run, each from the first source that works:
 * 1. `TEST_NATS_URL` / `TEST_REDIS_URL` from the environment (checked to answer; an unreachable one is an error,
 *    never silently replaced);
 * 2. local `nats-server` / `redis-server` binaries, found on `PATH` or in `binDirs`, on free ports;
 * 3. testcontainers (`nats:2-alpine -js`, `redis:7-alpine`) when a Docker daemon answers; testcontainers is
 *    imported only then.
 *
 * Rejects with an {@link InfraUnavailableError} naming what to install when a server has no source; nothing is
 * left running in that case.
 */
export async function provideInfra(options: ProvideInfraOptions = {}): Promise<Infra> {
  const env = readInfraEnv(options.env);
  const binDirs = options.binDirs ?? DEFAULT_BIN_DIRS;
  let docker: Promise<boolean> | undefined;
  const dockerAnswers = (): Promise<boolean> => {
    docker ??= options.containers === false ? Promise.resolve(false) : dockerAvailable(env);
    return docker;
  };

  const natsPlan = await plan(env.testNatsUrl, findBinary("nats-server", env.pathDirs, binDirs), dockerAnswers);
  const redisPlan = await plan(env.testRedisUrl, findBinary("redis-server", env.pathDirs, binDirs), dockerAnswers);
  if (natsPlan === undefined || redisPlan === undefined) {
    const missing = [
      natsPlan === undefined ? "nats-server" : undefined,
      redisPlan === undefined ? "redis-server" : undefined,
    ]
      .filter((name) => name !== undefined)
      .join(" and ");
    throw new InfraUnavailableError(
      `Integration tests need real NATS (JetStream) and Redis, but ${missing} could not be provided: ` +
        `TEST_NATS_URL/TEST_REDIS_URL are not set, the binaries are not on PATH or in ${binDirs.join(", ") || "(no extra dirs)"}, ` +
        `and ${options.containers === false ? "testcontainers is disabled" : "no Docker daemon answers for testcontainers"}. ` +
        `Install them with \`${INSTALL_HINT}\` (or start Docker, or set TEST_NATS_URL and TEST_REDIS_URL).`,
    );
  }

  const stops: Array<() => Promise<void>> = [];
  const stopAll = async (): Promise<void> => {
    // Reverse order of start, and every stop attempted even if one fails.
    const results = await Promise.allSettled(stops.reverse().map((stop) => stop()));
    stops.length = 0;
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed !== undefined) throw failed.reason;
  };
  try {
    const natsUrl = await realize("nats", natsPlan, stops);
    const redisUrl = await realize("redis", redisPlan, stops);
    let stopped: Promise<void> | undefined;
    return {
      natsUrl,
      redisUrl,
      sources: { nats: natsPlan.source, redis: redisPlan.source },
      stop() {
        stopped ??= stopAll();
        return stopped;
      },
    };
  } catch (err) {
    await stopAll().catch(() => undefined);
    throw err;
  }
}

/**
 * The first executable file named `name` in `pathDirs`, then `extraDirs`; `undefined` when there is none.
 */
export function findBinary(
  name: string,
  pathDirs: readonly string[],
  extraDirs: readonly string[] = DEFAULT_BIN_DIRS,
): string | undefined {
  for (const dir of [...pathDirs, ...extraDirs]) {
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not here; try the next directory.
    }
  }
  return undefined;
}

/**
 * Whether a Docker daemon answers, within about a second for local sockets. A unix socket (`DOCKER_HOST=unix://…`
 * or the usual socket paths) is pinged directly; any other `DOCKER_HOST` is left to testcontainers' own client.
 */
export async function dockerAvailable(env: InfraEnv = readInfraEnv()): Promise<boolean> {
  if (env.dockerHost !== undefined && !env.dockerHost.startsWith("unix://")) {
    try {
      const { getContainerRuntimeClient } = await import("testcontainers");
      await withTimeout(getContainerRuntimeClient(), 10_000);
      return true;
    } catch {
      return false;
    }
  }
  const sockets = env.dockerHost !== undefined ? [env.dockerHost.slice("unix://".length)] : env.dockerSockets;
  for (const socketPath of sockets) {
    if (await pingDockerSocket(socketPath)) return true;
  }
  return false;
}

type Plan = { source: "env"; url: string } | { source: "local"; binary: string } | { source: "container" };

async function plan(
  envUrl: string | undefined,
  binary: string | undefined,
  dockerAnswers: () => Promise<boolean>,
): Promise<Plan | undefined> {
  if (envUrl !== undefined) return { source: "env", url: envUrl };
  if (binary !== undefined) return { source: "local", binary };
  if (await dockerAnswers()) return { source: "container" };
  return undefined;
}

async function realize(kind: "nats" | "redis", plan: Plan, stops: Array<() => Promise<void>>): Promise<string> {
  switch (plan.source) {
    case "env": {
      const variable = kind === "nats" ? "TEST_NATS_URL" : "TEST_REDIS_URL";
      try {
        if (kind === "nats") await waitForJetStream(plan.url, 5_000);
        else {
          const { hostname, port } = new URL(plan.url);
          await waitFor(() => redisAnswers(hostname, Number(port || 6379)), {
            timeoutMs: 5_000,
            description: `${plan.url} to answer PING`,
          });
        }
      } catch (err) {
        throw new InfraUnavailableError(
          `${variable}=${plan.url} is set but does not answer: ${(err as Error).message}`,
          { cause: err },
        );
      }
      return plan.url;
    }
    case "local": {
      const server =
        kind === "nats"
          ? await startNatsServer({ binary: plan.binary })
          : await startRedisServer({ binary: plan.binary });
      stops.push(() => server.stop());
      return server.url;
    }
    case "container": {
      // Imported here so runs with local binaries never load testcontainers (and its Docker client).
      const { GenericContainer, Wait } = await import("testcontainers");
      const [image, port, ready, scheme] =
        kind === "nats"
          ? ([NATS_IMAGE, 4222, /Server is ready/, "nats"] as const)
          : ([REDIS_IMAGE, 6379, /Ready to accept connections/, "redis"] as const);
      let container = new GenericContainer(image).withExposedPorts(port).withWaitStrategy(Wait.forLogMessage(ready));
      // The image's entrypoint prefixes nats-server when the first argument is a flag.
      if (kind === "nats") container = container.withCommand(["-js"]);
      const started = await container.start();
      stops.push(async () => {
        await started.stop();
      });
      const url = `${scheme}://${started.getHost()}:${started.getMappedPort(port)}`;
      if (kind === "nats") await waitForJetStream(url, 20_000);
      return url;
    }
  }
}

/** Runs `launch` on the given port, or on fresh free ports until one is not taken by a racing process. */
async function launchOnPort(
  fixedPort: number | undefined,
  launch: (port: number) => Promise<ServiceProcess>,
): Promise<{ port: number; server: ServiceProcess }> {
  if (fixedPort !== undefined) return { port: fixedPort, server: await launch(fixedPort) };
  let lastError: unknown;
  for (let attempt = 0; attempt < PORT_ATTEMPTS; attempt++) {
    const port = await freePort();
    try {
      return { port, server: await launch(port) };
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError;
}

/** Resolves once `url` accepts a NATS connection and `$JS.API.INFO` answers without an error. */
async function waitForJetStream(url: string, timeoutMs: number): Promise<void> {
  await waitFor(
    async () => {
      const nc = await connect({ servers: url, reconnect: false, timeout: 1_000 });
      try {
        const reply = await nc.request("$JS.API.INFO", "", { timeout: 1_000 });
        const info = reply.json<{ error?: { description?: string } }>();
        if (info.error !== undefined) throw new Error(`JetStream: ${info.error.description ?? "error"}`);
        return true;
      } finally {
        await nc.close();
      }
    },
    { timeoutMs, intervalMs: 100, description: `JetStream at ${url}` },
  );
}

/** Whether a Redis server at host:port answers a RESP request (PONG, or an auth error: either way it is up). */
function redisAnswers(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host, port });
    let reply = "";
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once("error", () => done(false));
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.on("data", (chunk) => {
      reply += chunk.toString("utf8");
      if (reply.includes("\r\n")) done(reply.startsWith("+PONG") || reply.startsWith("-NOAUTH"));
    });
  });
}

function pingDockerSocket(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = httpRequest({ socketPath, path: "/_ping", method: "GET", timeout: 1_000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.once("timeout", () => req.destroy(new Error("timeout")));
    req.once("error", () => resolve(false));
    req.end();
  });
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function requireBinary(name: string): string {
  const binary = findBinary(name, readInfraEnv().pathDirs);
  if (binary === undefined) {
    throw new InfraUnavailableError(
      `${name} not found on PATH or in ${DEFAULT_BIN_DIRS.join(", ")}; install it with \`${INSTALL_HINT}\``,
    );
  }
  return binary;
}
