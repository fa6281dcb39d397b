// A small process supervisor for `npm start`: keeps named child processes running, restarting one that exits on its
// own with exponential backoff, and stops them all in order on request. No dependencies; tested by
// scripts/test/supervisor.int.test.ts on tiny node children.
import { spawn } from "node:child_process";

/**
 * What to run and how to watch it.
 * @typedef {object} ChildSpec
 * @property {string} name  Label for logs and output prefixes; unique within a supervisor.
 * @property {string} cmd
 * @property {string[]} [args]
 * @property {string} [cwd]
 * @property {NodeJS.ProcessEnv} [env]  The child's whole environment (default: this process's).
 * @property {number} [tier]  Stop order: higher tiers stop first, and each tier has exited before the next lower one
 *   is signalled (default 0). Services sit above the NATS/Redis they drain into.
 * @property {string} [readyUrl]  Polled after a restart until it answers 2xx, to log how long the child was
 *   unavailable; {@link Supervisor.waitReady} polls it too.
 */

/**
 * @typedef {object} SupervisorOptions
 * @property {(line: string) => void} [log]  Supervisor events: exits, restarts, readiness after a restart, stop.
 * @property {NodeJS.WritableStream} [stdout]  Where children's stdout lines go, prefixed by name (default process.stdout).
 * @property {NodeJS.WritableStream} [stderr]  Likewise for stderr (default process.stderr).
 * @property {number} [initialDelayMs]  Delay before the first restart after a crash (default 250).
 * @property {number} [maxDelayMs]  Cap of the doubling delay; a crash-looping child is retried at this pace forever
 *   (default 10 000).
 * @property {number} [resetAfterMs]  A child that stayed up this long before exiting restarts at initialDelayMs again
 *   (default 30 000).
 * @property {number} [stopTimeoutMs]  Grace between SIGTERM and SIGKILL when stopping (default 8 000; services drain
 *   within their own 4 s SHUTDOWN_TIMEOUT_MS).
 */

/**
 * @typedef {object} ChildStatus
 * @property {string} name
 * @property {"running" | "backoff" | "stopped"} state  "backoff": exited, restart scheduled.
 * @property {number | undefined} pid  The current process, while running.
 * @property {number[]} pids  Every process started for this child, oldest first.
 * @property {number} restarts  Restarts after unexpected exits (not counting the first start).
 * @property {number | undefined} startedAt  Date.now() when the current process was spawned.
 * @property {{ code: number | null, signal: string | null } | undefined} lastExit
 */

/**
 * @typedef {object} Supervisor
 * @property {(spec: ChildSpec) => void} start  Spawns the child now and keeps it running until stop(). Throws after
 *   stop() has begun or when the name is taken.
 * @property {(name: string, timeoutMs: number) => Promise<boolean>} waitReady  Resolves true once the child's readyUrl
 *   answers 2xx, false after timeoutMs or once stopping.
 * @property {() => ChildStatus[]} status  A snapshot, in start order.
 * @property {() => Promise<ChildStatus[]>} stop  Stops every child: no restart is scheduled or run from the moment it is
 *   called; pending restarts are cancelled; tier by tier (highest first) each running child gets SIGTERM, and SIGKILL
 *   if still alive after stopTimeoutMs. Resolves once every child has exited, with the final status. Idempotent: later
 *   calls return the same promise.
 * @property {boolean} stopping
 */

/**
 * Creates a supervisor. A child that exits while the supervisor is not stopping — whatever its code or signal — is
 * restarted after initialDelayMs × 2^(consecutive crashes), capped at maxDelayMs; the count of consecutive crashes
 * resets when the child had stayed up resetAfterMs. Each exit and restart is logged and counted in status().
 * A child that cannot be spawned at all (e.g. ENOENT) counts as a crash.
 *
 * Children run in their own process group, so a terminal's Ctrl-C reaches only this process, which then stops them
 * in tier order (services before the servers they flush into).
 * @param {SupervisorOptions} [options]
 * @returns {Supervisor}
 */
export function createSupervisor(options = {}) {
  const {
    log = (line) => process.stdout.write(`${line}\n`),
    stdout = process.stdout,
    stderr = process.stderr,
    initialDelayMs = 250,
    maxDelayMs = 10_000,
    resetAfterMs = 30_000,
    stopTimeoutMs = 8_000,
  } = options;
  /** @type {Map<string, Entry>} */
  const entries = new Map();
  /** @type {Promise<ChildStatus[]> | undefined} */
  let stopped;

  /**
   * @typedef {object} Entry
   * @property {ChildSpec} spec
   * @property {import("node:child_process").ChildProcess | undefined} child  Set while the process is alive.
   * @property {Promise<void>} exited  Resolves when the current process has exited.
   * @property {NodeJS.Timeout | undefined} timer  A scheduled restart.
   * @property {number[]} pids
   * @property {number} restarts
   * @property {number} crashes  Consecutive quick crashes, the backoff exponent.
   * @property {number | undefined} startedAt
   * @property {number} generation  Counts spawns, so a readiness poll can tell that its process was replaced.
   * @property {{ code: number | null, signal: string | null } | undefined} lastExit
   */

  function spawnChild(entry) {
    const { spec } = entry;
    entry.timer = undefined;
    entry.startedAt = Date.now();
    entry.generation += 1;
    const child = spawn(spec.cmd, spec.args ?? [], {
      cwd: spec.cwd,
      env: spec.env ?? process.env,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    entry.child = child;
    if (child.pid !== undefined) entry.pids.push(child.pid);
    const prefix = `${spec.name.padEnd(9)}| `;
    pipeLines(child.stdout, stdout, prefix);
    pipeLines(child.stderr, stderr, prefix);
    let onExited;
    entry.exited = new Promise((res) => {
      onExited = res;
    });
    let ended = false;
    const end = (code, signal, error) => {
      if (ended) return;
      ended = true;
      entry.child = undefined;
      entry.lastExit = { code, signal };
      onExited();
      if (stopped) return;
      const upMs = Date.now() - entry.startedAt;
      if (upMs >= resetAfterMs) entry.crashes = 0;
      const delay = Math.min(maxDelayMs, initialDelayMs * 2 ** entry.crashes);
      entry.crashes += 1;
      const how = error ? `could not start (${error.message})` : `exited (${signal ?? `code ${code}`})`;
      log(`${spec.name} ${how} after ${seconds(upMs)}; restart #${entry.restarts + 1} in ${delay} ms`);
      entry.timer = setTimeout(() => restart(entry), delay);
    };
    child.once("exit", (code, signal) => end(code, signal));
    // "error" without a pid: the spawn itself failed and no "exit" follows.
    child.on("error", (err) => {
      if (child.pid === undefined) end(null, null, err);
    });
  }

  function restart(entry) {
    if (stopped) return;
    entry.restarts += 1;
    spawnChild(entry);
    log(`${entry.spec.name} restarted (pid ${entry.child?.pid ?? "none"}, restart #${entry.restarts})`);
    if (entry.spec.readyUrl) {
      const { startedAt, restarts, generation } = entry;
      void pollReady(entry, Number.POSITIVE_INFINITY, generation).then((ok) => {
        if (ok) log(`${entry.spec.name} is ready again, ${seconds(Date.now() - startedAt)} after restart #${restarts}`);
      });
    }
  }

  /**
   * Polls readyUrl until 2xx; gives up after timeoutMs, once stopping, or — when `generation` is given — once that
   * process has been replaced.
   */
  async function pollReady(entry, timeoutMs, generation) {
    const until = Date.now() + timeoutMs;
    while (Date.now() < until && !stopped && (generation === undefined || entry.generation === generation)) {
      try {
        const res = await fetch(entry.spec.readyUrl, { signal: AbortSignal.timeout(1_000) });
        await res.body?.cancel();
        if (res.ok) return true;
      } catch {}
      await new Promise((r) => setTimeout(r, 100));
    }
    return false;
  }

  function statusOf(entry) {
    return {
      name: entry.spec.name,
      state: entry.child ? "running" : entry.timer ? "backoff" : "stopped",
      pid: entry.child?.pid,
      pids: [...entry.pids],
      restarts: entry.restarts,
      startedAt: entry.child ? entry.startedAt : undefined,
      lastExit: entry.lastExit,
    };
  }

  async function stopAll() {
    for (const entry of entries.values()) {
      clearTimeout(entry.timer);
      entry.timer = undefined;
    }
    const tiers = [...new Set([...entries.values()].map((e) => e.spec.tier ?? 0))].sort((a, b) => b - a);
    for (const tier of tiers) {
      const group = [...entries.values()].filter((e) => (e.spec.tier ?? 0) === tier);
      await Promise.all(group.map(stopOne));
    }
    const restarted = [...entries.values()].filter((e) => e.restarts > 0);
    if (restarted.length > 0)
      log(`restarts this run: ${restarted.map((e) => `${e.spec.name} ${e.restarts}`).join(", ")}`);
    return [...entries.values()].map(statusOf);
  }

  async function stopOne(entry) {
    const { child } = entry;
    if (!child) return;
    child.kill("SIGTERM");
    const timer = setTimeout(() => {
      if (entry.child === child) {
        log(`${entry.spec.name} did not exit within ${stopTimeoutMs} ms of SIGTERM; sending SIGKILL`);
        child.kill("SIGKILL");
      }
    }, stopTimeoutMs);
    await entry.exited;
    clearTimeout(timer);
  }

  return {
    start(spec) {
      if (stopped) throw new Error(`Cannot start ${spec.name}: the supervisor is stopping`);
      if (entries.has(spec.name)) throw new Error(`A child named ${spec.name} is already supervised`);
      /** @type {Entry} */
      const entry = {
        spec,
        child: undefined,
        exited: Promise.resolve(),
        pids: [],
        restarts: 0,
        crashes: 0,
        generation: 0,
      };
      entries.set(spec.name, entry);
      spawnChild(entry);
    },
    waitReady(name, timeoutMs) {
      const entry = entries.get(name);
      if (!entry?.spec.readyUrl) return Promise.reject(new Error(`${name} has no readyUrl`));
      return pollReady(entry, timeoutMs);
    },
    status: () => [...entries.values()].map(statusOf),
    stop() {
      stopped ??= stopAll();
      return stopped;
    },
    get stopping() {
      return stopped !== undefined;
    },
  };
}

/** Copies `from` to `to` line by line, each line prefixed; a last line without a newline is written at the end. */
function pipeLines(from, to, prefix) {
  let buf = "";
  from.setEncoding("utf8");
  from.on("data", (d) => {
    buf += d;
    const lines = buf.split("\n");
    buf = lines.pop();
    for (const l of lines) to.write(`${prefix}${l}\n`);
  });
  from.on("end", () => {
    if (buf) to.write(`${prefix}${buf}\n`);
  });
}

function seconds(ms) {
  return `${(ms / 1000).toFixed(1)} s`;
}
