import { credentials, makeGenericClientConstructor, type ServiceError } from "@grpc/grpc-js";
import { service as healthService } from "grpc-health-check";
import { describe, expect, it } from "vitest";
import { freePort } from "./ports.js";
import { type ServiceProcess, spawnService } from "./process.js";

/** Calls `grpc.health.v1.Health/Check` for `service` ("" = the whole server); resolves to the status name. */
export function grpcHealth(address: string, service = ""): Promise<string> {
  const Client = makeGenericClientConstructor(healthService, "grpc.health.v1.Health");
  const client = new Client(address, credentials.createInsecure()) as unknown as {
    check(req: unknown, opts: unknown, cb: (e: ServiceError | null, r: { status: number | string }) => void): void;
    close(): void;
  };
  return new Promise((resolve, reject) => {
    client.check({ service }, { deadline: new Date(Date.now() + 5_000) }, (err, res) => {
      client.close();
      if (err) reject(err);
      else
        resolve(
          typeof res.status === "number" ? (["UNKNOWN", "SERVING", "NOT_SERVING"][res.status] ?? "?") : res.status,
        );
    });
  });
}

/** The ports a service under test gets (free loopback ports). */
export interface ServicePorts {
  grpc: number;
  /** The ops HTTP port (the gateway's HTTP port for the gateway). */
  ops: number;
}

export interface LifecycleSuiteOptions {
  /** Service name, as in `services/<name>`. */
  service: string;
  /** Absolute path of the service's package directory (it must be built). */
  dir: string;
  /** The environment for a good start, given the ports picked for this run. */
  env: (ports: ServicePorts) => Record<string, string>;
  /** The gRPC service name that must be SERVING besides the server as a whole (e.g. "tokenmesh.guard.v1.GuardService"). */
  grpcService?: string;
  /** A variable and a bad value for it: the process must refuse to start, naming the variable. */
  badEnv: [name: string, value: string];
  /** Time allowed for the service to become ready (model loading takes longer). */
  readyTimeoutMs?: number;
  /** More checks on the ready process (its pid, what it answers), before it is stopped. */
  whileReady?: (proc: ServiceProcess) => Promise<void> | void;
}

/**
 * The lifecycle contract every service keeps, as a vitest suite: run as a real process (`node --import
 * @tokenmesh/telemetry/register dist/main.js`), it becomes ready on `/readyz` with its dependency checks passing,
 * answers gRPC health SERVING, and exits 0 within 5 s of SIGTERM; a bad environment value stops it with a message
 * naming the variable and a non-zero exit.
 */
export function serviceLifecycleSuite(options: LifecycleSuiteOptions): void {
  const start = ["--import", "@tokenmesh/telemetry/register", "dist/main.js"];
  describe(`${options.service} process`, () => {
    it("becomes ready, serves gRPC health, and exits 0 within 5 s of SIGTERM", async () => {
      const ports = { grpc: await freePort(), ops: await freePort() };
      const proc = await spawnService({
        name: options.service,
        cmd: process.execPath,
        args: start,
        cwd: options.dir,
        env: { LOG_LEVEL: "info", ...options.env(ports) },
        readyUrl: `http://127.0.0.1:${ports.ops}/readyz`,
        readyTimeoutMs: options.readyTimeoutMs ?? 30_000,
        stopTimeoutMs: 10_000,
      });
      try {
        const ready = (await (await fetch(`http://127.0.0.1:${ports.ops}/readyz`)).json()) as {
          status: string;
          checks: Record<string, { ok: boolean }>;
        };
        expect(ready.status).toBe("ready");
        for (const check of Object.values(ready.checks)) expect(check.ok).toBe(true);
        expect((await fetch(`http://127.0.0.1:${ports.ops}/healthz`)).status).toBe(200);
        const metrics = await (await fetch(`http://127.0.0.1:${ports.ops}/metrics`)).text();
        expect(metrics).toContain("tokenmesh_process_cpu_seconds_total");
        expect(await grpcHealth(`127.0.0.1:${ports.grpc}`)).toBe("SERVING");
        if (options.grpcService)
          expect(await grpcHealth(`127.0.0.1:${ports.grpc}`, options.grpcService)).toBe("SERVING");
        await options.whileReady?.(proc);
      } finally {
        const started = Date.now();
        const exit = await proc.stop();
        const ms = Date.now() - started;
        expect(exit, proc.output()).toEqual({ code: 0, signal: null });
        expect(ms).toBeLessThan(5_000);
        expect(proc.output()).toContain("shutdown complete");
      }
    });

    it("refuses a bad environment value, naming the variable", async () => {
      const ports = { grpc: await freePort(), ops: await freePort() };
      const [name, value] = options.badEnv;
      const proc = await spawnService({
        name: options.service,
        cmd: process.execPath,
        args: start,
        cwd: options.dir,
        env: { ...options.env(ports), [name]: value },
      });
      const exit = await proc.waitForExit(15_000);
      expect(exit.code).toBe(2);
      expect(proc.output()).toContain(`${name}:`);
    });
  });
}
