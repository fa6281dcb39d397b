import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import { parentEnv } from "./config.js";
import { waitFor } from "./wait.js";

/** How a child process ended: an exit code, or the signal that killed it. */
export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Options for {@link spawnService}. */
export interface SpawnServiceOptions {
  /** The executable (a path, or a name looked up on `PATH`). */
  cmd: string;
  args?: readonly string[];
  /** Variables set for the child, on top of this process's environment (a value of `undefined` removes one). */
  env?: Readonly<Record<string, string | undefined>>;
  /** Start from an empty environment instead of this process's one (default false). */
  cleanEnv?: boolean;
  cwd?: string;
  /** Ready once a GET of this URL answers 2xx. */
  readyUrl?: string;
  /** Ready once the combined stdout/stderr matches this (a string matches as a substring). */
  readyPattern?: RegExp | string;
  /** How long to wait for readiness before killing the child and failing (default 30 000 ms). */
  readyTimeoutMs?: number;
  /** How long `stop()` waits after SIGTERM before sending SIGKILL (default 5 000 ms). */
  stopTimeoutMs?: number;
  /** A name for error messages (default: `cmd`). */
  name?: string;
}

/** A child process started by {@link spawnService}. */
export interface ServiceProcess {
  readonly child: ChildProcess;
  /** Everything the child wrote to stdout and stderr so far, interleaved as received (the last 1 MiB). */
  output(): string;
  /**
   * Resolves with the first match of `pattern` in the output (including output already received); rejects when
   * the child exits first or after `timeoutMs` (default 30 000 ms).
   */
  waitForOutput(pattern: RegExp | string, timeoutMs?: number): Promise<string>;
  /** Resolves when the child has exited (immediately if it already has); rejects after `timeoutMs` if given. */
  waitForExit(timeoutMs?: number): Promise<ExitStatus>;
  /**
   * Sends SIGTERM, then SIGKILL if the child is still running after `stopTimeoutMs`; resolves with how it
   * ended. Idempotent: later calls return the same result.
   */
  stop(): Promise<ExitStatus>;
}

/** Raised when a spawned child fails to start, exits before it is ready, or is not ready in time. */
export class ServiceStartError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ServiceStartError";
  }
}

const OUTPUT_LIMIT = 1024 * 1024;
const live = new Set<ChildProcess>();
let exitHookInstalled = false;

/**
 * Spawns a long-running child process (a service under test, nats-server, …) and resolves once it is ready:
 * when `readyUrl` answers 2xx and/or `readyPattern` appears in its output, or right after it started when neither
 * is given. If the child exits or is not ready within `readyTimeoutMs`, it is killed and the promise rejects with
 * a {@link ServiceStartError} whose message includes the tail of its output.
 *
 * Children still running when this process exits are SIGKILLed, so a crashed test run leaves no strays.
 */
export async function spawnService(options: SpawnServiceOptions): Promise<ServiceProcess> {
  const { cmd, args = [], cwd, readyUrl, readyPattern, readyTimeoutMs = 30_000, stopTimeoutMs = 5_000 } = options;
  const name = options.name ?? cmd;
  const env = { ...(options.cleanEnv === true ? {} : parentEnv()), ...options.env };
  for (const key of Object.keys(env)) if (env[key] === undefined) delete env[key];

  const child = spawn(cmd, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
  trackChild(child);

  let text = "";
  const onData = (chunk: Buffer): void => {
    text += chunk.toString("utf8");
    // Keep the tail: a chatty service must not grow the test runner's memory without bound.
    if (text.length > OUTPUT_LIMIT) text = text.slice(text.length - OUTPUT_LIMIT);
    child.emit("tokenmesh:output");
  };
  child.stdout?.on("data", onData);
  child.stderr?.on("data", onData);

  // Resolves once, whichever way the child ends (including a failed spawn, which emits only "error").
  const exited = new Promise<ExitStatus>((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }));
    child.once("error", () => resolve({ code: child.exitCode, signal: child.signalCode }));
  });
  let spawnError: Error | undefined;
  child.once("error", (err) => {
    spawnError = err;
  });
  let stopping: Promise<ExitStatus> | undefined;

  const describeExit = (status: ExitStatus): string =>
    spawnError !== undefined
      ? `failed to start (${spawnError.message})`
      : `exited with ${status.signal === null ? `code ${status.code}` : status.signal}`;
  const tail = (): string => {
    const last = text.slice(-4000).trimEnd();
    return last === "" ? "(no output)" : last;
  };

  const handle: ServiceProcess = {
    child,
    output: () => text,
    waitForOutput(pattern, timeoutMs = 30_000) {
      return new Promise<string>((resolve, reject) => {
        const check = (): boolean => {
          const match =
            typeof pattern === "string" ? (text.includes(pattern) ? pattern : undefined) : text.match(pattern)?.[0];
          if (match === undefined) return false;
          cleanup();
          resolve(match);
          return true;
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(
            new ServiceStartError(
              `${name}: no output matching ${String(pattern)} after ${timeoutMs} ms. Output:\n${tail()}`,
            ),
          );
        }, timeoutMs);
        const onExit = (): void => {
          // Output may still be buffered in the pipes when "exit" fires; give it a turn before failing.
          setImmediate(() => {
            if (check()) return;
            cleanup();
            void exited.then((status) =>
              reject(
                new ServiceStartError(
                  `${name} ${describeExit(status)} before printing ${String(pattern)}. Output:\n${tail()}`,
                ),
              ),
            );
          });
        };
        const cleanup = (): void => {
          clearTimeout(timer);
          child.off("tokenmesh:output", check);
          child.off("exit", onExit);
          child.off("error", onExit);
        };
        if (check()) return;
        child.on("tokenmesh:output", check);
        if (child.exitCode !== null || child.signalCode !== null || spawnError !== undefined) onExit();
        else {
          child.once("exit", onExit);
          child.once("error", onExit);
        }
      });
    },
    async waitForExit(timeoutMs) {
      if (timeoutMs === undefined) return exited;
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${name} still running after ${timeoutMs} ms`)), timeoutMs);
      });
      try {
        return await Promise.race([exited, timeout]);
      } finally {
        clearTimeout(timer);
      }
    },
    stop() {
      stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null && spawnError === undefined) {
          child.kill("SIGTERM");
          const timer = sleep(stopTimeoutMs, "timeout" as const);
          if ((await Promise.race([exited, timer])) === "timeout") child.kill("SIGKILL");
        }
        return exited;
      })();
      return stopping;
    },
  };

  try {
    await once(child, "spawn");
  } catch (err) {
    throw new ServiceStartError(`${name}: could not start ${cmd}: ${(err as Error).message}`, { cause: err });
  }

  const started = Date.now();
  try {
    if (readyPattern !== undefined) await handle.waitForOutput(readyPattern, readyTimeoutMs);
    if (readyUrl !== undefined) {
      const remaining = Math.max(0, readyTimeoutMs - (Date.now() - started));
      await Promise.race([
        waitForUrl(readyUrl, { timeoutMs: remaining }),
        exited.then((status) => {
          throw new ServiceStartError(
            `${name} ${describeExit(status)} before ${readyUrl} answered. Output:\n${tail()}`,
          );
        }),
      ]);
    }
  } catch (err) {
    await handle.stop();
    if (err instanceof ServiceStartError) throw err;
    throw new ServiceStartError(`${name} not ready: ${(err as Error).message}. Output:\n${tail()}`, { cause: err });
  }
  return handle;
}

/**
 * Resolves once a GET of `url` answers with a 2xx status; connection errors and other statuses mean "not yet".
 * Rejects with a `WaitForTimeoutError` after `timeoutMs` (default 30 000 ms).
 */
export async function waitForUrl(
  url: string,
  options: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<void> {
  const { timeoutMs = 30_000, intervalMs = 100 } = options;
  await waitFor(
    async () => {
      const response = await fetch(url, { signal: AbortSignal.timeout(Math.max(250, Math.min(2_000, timeoutMs))) });
      await response.body?.cancel();
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      return true;
    },
    { timeoutMs, intervalMs, description: `${url} to answer 2xx` },
  );
}

function trackChild(child: ChildProcess): void {
  live.add(child);
  child.once("exit", () => live.delete(child));
  child.once("error", () => live.delete(child));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    // "exit" handlers must be synchronous; SIGKILL is the only thing we can still do here.
    process.once("exit", () => {
      for (const c of live) c.kill("SIGKILL");
    });
  }
}
