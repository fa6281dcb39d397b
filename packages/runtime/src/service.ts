import { collectProcessMetrics, createLogger, type Logger, stopTelemetry } from "@tokenmesh/telemetry";
import type { z } from "zod";
import { ConfigError, parseEnv } from "./config.js";
import { GrpcServer } from "./grpc-server.js";
import { setHeapGrowingPercent } from "./heap.js";
import { Lifecycle, ShutdownPhase } from "./lifecycle.js";
import { type OpsServer, type ReadinessCheck, runChecks, startOpsServer } from "./ops-server.js";

/** What `createApp` returns: all wiring, no side effects until `start`. */
export interface App {
  start(): Promise<void>;
  /** Runs the ordered shutdown; resolves to the exit code. */
  stop(): Promise<number>;
}

/** What every app is given by its entry file (tests build their own). */
export interface AppDeps {
  logger: Logger;
  lifecycle: Lifecycle;
}

export interface ServiceHostOptions {
  logger: Logger;
  lifecycle: Lifecycle;
  grpc?: { host: string; port: number };
  /** The ops HTTP port; omit when the service serves /healthz, /readyz and /metrics itself (the gateway). */
  ops?: { host: string; port: number };
  checks?: Record<string, ReadinessCheck>;
  info?: () => Record<string, unknown>;
}

/**
 * The parts every service has: a gRPC server (health + reflection) and the ops HTTP port, with their shutdown
 * steps registered: health NOT_SERVING first, then stop intake and drain in-flight calls (aborting them shortly
 * before the deadline), and the ops port last so `/healthz` answers while draining.
 */
export class ServiceHost {
  readonly grpc: GrpcServer | undefined;
  private ops: OpsServer | undefined;
  grpcPort = 0;
  opsPort = 0;

  constructor(private readonly options: ServiceHostOptions) {
    const { lifecycle, logger } = options;
    if (options.grpc) this.grpc = new GrpcServer({ logger });
    lifecycle.onShutdown("grpc: not serving", ShutdownPhase.NotReady, () => this.grpc?.setServing(false));
    // Abort in-flight calls 500 ms before the deadline so later steps (event flush, connections) still run.
    lifecycle.onShutdown("grpc: drain", ShutdownPhase.StopIntake, () =>
      this.grpc?.shutdown(Math.max(100, lifecycle.deadlineMs - 1_000)),
    );
    lifecycle.onShutdown("ops server: close", ShutdownPhase.FlushTelemetry, () => this.ops?.close());
  }

  /** Runs the readiness checks (for services that serve `/readyz` themselves). */
  readiness(): ReturnType<typeof runChecks> | Promise<{ ok: false; checks: Record<string, never> }> {
    if (!this.options.lifecycle.ready) return Promise.resolve({ ok: false, checks: {} });
    return runChecks(this.options.checks ?? {});
  }

  /** Binds the ports and marks the service ready and SERVING. Call after dependencies are connected. */
  async start(): Promise<void> {
    const { options } = this;
    collectProcessMetrics();
    if (options.ops) {
      this.ops = await startOpsServer({
        host: options.ops.host,
        port: options.ops.port,
        isReady: () => options.lifecycle.ready,
        checks: options.checks ?? {},
        ...(options.info ? { info: options.info } : {}),
      });
      this.opsPort = this.ops.port;
    }
    if (this.grpc && options.grpc) {
      this.grpcPort = await this.grpc.listen(options.grpc.host, options.grpc.port);
      this.grpc.setServing(true);
    }
    options.lifecycle.markReady();
    options.logger.info({ grpc_port: this.grpcPort || undefined, ops_port: this.opsPort }, "listening");
  }
}

/**
 * The body of every `main.ts`: validates the environment (printing every problem and exiting 2 when invalid),
 * builds the app, starts it, and exits with the shutdown's code on SIGTERM/SIGINT (0 when it drained in time).
 */
export async function runMain<
  S extends z.ZodType<{ LOG_LEVEL: string; SHUTDOWN_TIMEOUT_MS: number; HEAP_GROWING_PERCENT: number }>,
>(service: string, schema: S, build: (config: z.infer<S>, deps: AppDeps) => App | Promise<App>): Promise<void> {
  let config: z.infer<S>;
  try {
    config = parseEnv(schema, process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`tokenmesh-${service}: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  // Before the app allocates: V8 uses it from the next full GC on.
  setHeapGrowingPercent(config.HEAP_GROWING_PERCENT);
  const logger = createLogger({ service: `tokenmesh-${service}`, level: config.LOG_LEVEL });
  const lifecycle = new Lifecycle({ logger, deadlineMs: config.SHUTDOWN_TIMEOUT_MS });
  lifecycle.onShutdown("telemetry: flush", ShutdownPhase.FlushTelemetry, () => stopTelemetry());
  lifecycle.installSignalHandlers();
  process.on("unhandledRejection", (err) => logger.error({ err }, "unhandled rejection"));
  try {
    const app = await build(config, { logger, lifecycle });
    await app.start();
  } catch (err) {
    logger.fatal({ err }, "failed to start");
    const code = await lifecycle.shutdown("start failed");
    process.exit(code === 0 ? 1 : code);
  }
}
