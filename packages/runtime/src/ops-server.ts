import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { registry } from "@tokenmesh/telemetry";

/** One dependency check for `/readyz`: resolves to a detail string, throws (or rejects) when not ready. */
export type ReadinessCheck = () => Promise<string | undefined> | string | undefined;

export interface OpsServerOptions {
  host: string;
  port: number;
  /** False while starting or draining: `/readyz` answers 503 without running checks. */
  isReady: () => boolean;
  checks: Record<string, ReadinessCheck>;
  /** Extra fields for `/readyz` (e.g. the inference device). */
  info?: () => Record<string, unknown>;
}

export interface OpsServer {
  readonly port: number;
  close(): Promise<void>;
}

const CHECK_TIMEOUT_MS = 2_000;

/** Runs readiness checks concurrently, each within a timeout. */
export async function runChecks(
  checks: Record<string, ReadinessCheck>,
): Promise<{ ok: boolean; checks: Record<string, { ok: boolean; detail?: string }> }> {
  const entries = await Promise.all(
    Object.entries(checks).map(async ([name, check]) => {
      let timer: NodeJS.Timeout | undefined;
      try {
        const detail = await Promise.race([
          Promise.resolve().then(check),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error("timed out")), CHECK_TIMEOUT_MS);
          }),
        ]);
        return [name, { ok: true, ...(detail ? { detail } : {}) }] as const;
      } catch (err) {
        return [name, { ok: false, detail: (err as Error).message }] as const;
      } finally {
        clearTimeout(timer);
      }
    }),
  );
  return { ok: entries.every(([, r]) => r.ok), checks: Object.fromEntries(entries) };
}

/**
 * The ops HTTP port every service serves: `GET /healthz` (the process is up), `GET /readyz` (dependencies reachable
 * and not draining; 503 otherwise, with each check's result) and `GET /metrics` (Prometheus text).
 */
export async function startOpsServer(options: OpsServerOptions): Promise<OpsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET" }).end();
      return;
    }
    const json = (statusCode: number, body: unknown) => {
      res.writeHead(statusCode, { "content-type": "application/json" }).end(JSON.stringify(body));
    };
    if (path === "/healthz") {
      json(200, { status: "ok" });
    } else if (path === "/readyz") {
      if (!options.isReady()) {
        json(503, { status: "not ready", ...options.info?.() });
        return;
      }
      void runChecks(options.checks).then((r) =>
        json(r.ok ? 200 : 503, { status: r.ok ? "ready" : "not ready", checks: r.checks, ...options.info?.() }),
      );
    } else if (path === "/metrics") {
      void registry.metrics().then(
        (text) => res.writeHead(200, { "content-type": registry.contentType }).end(text),
        (err: Error) => res.writeHead(500).end(err.message),
      );
    } else {
      json(404, { error: "not found" });
    }
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
