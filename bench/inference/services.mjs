// Starting Tokenmesh's services (and NATS, Redis) as child processes for a bench, the way bench/gateway/run.mjs does:
// `node --import @tokenmesh/telemetry/register dist/main.js` in services/<name>, ports from the environment, ready
// when the ops port's /readyz answers 200. Each process writes its stdout and stderr to `<logDir>/<name>.log` (a file,
// not a pipe, so a process left running after the bench exits keeps working).
import { spawn } from "node:child_process";
import { closeSync, mkdirSync, openSync, readFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../../", import.meta.url));

/** Refuses to go on under Node < 24 (the services and this bench target the project's Node 24). */
export function requireNode24(script) {
  if (Number(process.versions.node.split(".")[0]) < 24) {
    console.error(`Node ${process.version}: run with the project's Node 24 (npx node ${script} ...)`);
    process.exit(2);
  }
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Starts `cmd argv` (output to `<logDir>/<name>.log`) and waits until `ready()` resolves true (polled every 100 ms),
 * or throws with the process's output when it exits first or `timeoutMs` passes.
 */
export async function startProcess(
  name,
  cmd,
  argv,
  { logDir, cwd = root, env = process.env, ready, timeoutMs = 180_000 },
) {
  const t0 = performance.now();
  mkdirSync(logDir, { recursive: true });
  const logFile = join(logDir, `${name}.log`);
  const fd = openSync(logFile, "a");
  const child = spawn(cmd, argv, { cwd, env, stdio: ["ignore", fd, fd] });
  closeSync(fd);
  let spawnError = "";
  child.once("error", (err) => {
    spawnError = `spawn ${cmd} failed: ${err.message}\n`;
  });
  /** The last 20 kB of the process's output. */
  const output = () => {
    try {
      return spawnError + readFileSync(logFile, "utf8").slice(-20_000);
    } catch {
      return spawnError;
    }
  };
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  const proc = {
    name,
    pid: child.pid,
    logFile,
    output,
    /** Leaves the process running and lets this one exit. */
    detach() {
      child.unref();
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const done = await Promise.race([exited, sleep(100).then(() => undefined)]);
    if (done !== undefined) throw new Error(`${name} exited (${JSON.stringify(done)}) before ready:\n${output()}`);
    if (await ready().catch(() => false)) break;
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`${name} not ready after ${timeoutMs / 1000} s:\n${output()}`);
    }
  }
  proc.readyMs = performance.now() - t0;
  return proc;
}

const httpOk = (url) => async () => (await fetch(url)).ok;

const tcpOpen = (port) => () =>
  new Promise((resolve) => {
    const s = connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });

/**
 * A Tokenmesh service from its build (services/<name>/dist/main.js) on free gRPC and ops ports; `env` adds to the
 * environment (addresses of the others, MESH_CONFIG, ...). `nodeFlags` go before `--import` (e.g. `--cpu-prof`).
 * `opsPortVar` names the variable of the port that serves /readyz (the gateway has no ops port: its HTTP port).
 */
export async function startService(name, { logDir, env = {}, nodeFlags = [], opsPortVar } = {}) {
  const [grpcPort, opsPort] = [await freePort(), await freePort()];
  const upper = name.toUpperCase();
  const proc = await startProcess(
    name,
    process.execPath,
    [...nodeFlags, "--import", "@tokenmesh/telemetry/register", "dist/main.js"],
    {
      cwd: join(root, "services", name),
      env: {
        ...process.env,
        LOG_LEVEL: process.env.LOG_LEVEL ?? "warn",
        ...env,
        [`${upper}_HOST`]: "127.0.0.1",
        [`${upper}_GRPC_PORT`]: String(grpcPort),
        [opsPortVar ?? `${upper}_OPS_PORT`]: String(opsPort),
      },
      logDir,
      ready: httpOk(`http://127.0.0.1:${opsPort}/readyz`),
    },
  );
  return Object.assign(proc, { grpcPort, opsPort, addr: `127.0.0.1:${grpcPort}` });
}

/** `nats-server -js` on a free port with its store in `storeDir`. */
export async function startNats(storeDir, logDir) {
  const port = await freePort();
  const proc = await startProcess(
    "nats",
    "nats-server",
    ["-js", "-a", "127.0.0.1", "-p", String(port), "-sd", storeDir],
    { logDir, ready: tcpOpen(port), timeoutMs: 30_000 },
  );
  return Object.assign(proc, { url: `nats://127.0.0.1:${port}` });
}

/** `redis-server` on a free port, no persistence. */
export async function startRedis(logDir) {
  const port = await freePort();
  const proc = await startProcess(
    "redis",
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    { logDir, ready: tcpOpen(port), timeoutMs: 30_000 },
  );
  return Object.assign(proc, { url: `redis://127.0.0.1:${port}` });
}
