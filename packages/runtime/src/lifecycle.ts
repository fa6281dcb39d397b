import type { Logger } from "@tokenmesh/telemetry";

/**
 * Shutdown steps run in this order (lower first); steps of the same phase run concurrently.
 */
export const ShutdownPhase = {
  /** Readiness turns false so load balancers stop sending work. */
  NotReady: 0,
  /** Stop taking new work: gRPC tryShutdown, HTTP close, drain subscriptions. */
  StopIntake: 10,
  /** Let in-flight requests and streams finish (inference is aborted at the deadline). */
  Drain: 20,
  /** Flush pending events (outboxes). */
  FlushEvents: 30,
  /** nc.drain(), then redis.quit(). */
  CloseConnections: 40,
  /** Last: flush traces. */
  FlushTelemetry: 50,
} as const;

interface Hook {
  name: string;
  phase: number;
  fn: () => Promise<void> | void;
}

/**
 * Ordered graceful shutdown within a deadline. Services register hooks with `onShutdown`; `shutdown()` runs them
 * phase by phase. It resolves to the exit code: 0 when every hook finished in time without error, 1 otherwise
 * (a hook past the deadline is abandoned, not awaited).
 */
export class Lifecycle {
  private readonly hooks: Hook[] = [];
  private shuttingDown: Promise<number> | undefined;
  private readyFlag = false;
  private readonly log: Logger;
  readonly deadlineMs: number;

  constructor(options: { logger: Logger; deadlineMs: number }) {
    this.log = options.logger;
    this.deadlineMs = options.deadlineMs;
  }

  /** Registers a step; `phase` is one of ShutdownPhase. */
  onShutdown(name: string, phase: number, fn: () => Promise<void> | void): void {
    this.hooks.push({ name, phase, fn });
  }

  get ready(): boolean {
    return this.readyFlag && !this.shuttingDown;
  }

  get stopping(): boolean {
    return this.shuttingDown !== undefined;
  }

  markReady(): void {
    this.readyFlag = true;
  }

  /** Runs every hook once; later calls return the same promise. */
  shutdown(reason: string): Promise<number> {
    this.shuttingDown ??= this.run(reason);
    return this.shuttingDown;
  }

  private async run(reason: string): Promise<number> {
    const started = Date.now();
    this.log.info({ reason, deadline_ms: this.deadlineMs }, "shutting down");
    let failed = false;
    const phases = [...new Set(this.hooks.map((h) => h.phase))].sort((a, b) => a - b);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), this.deadlineMs);
      timer.unref();
    });
    for (const phase of phases) {
      const steps = this.hooks.filter((h) => h.phase === phase);
      const run = Promise.all(
        steps.map(async (h) => {
          try {
            await h.fn();
          } catch (err) {
            failed = true;
            this.log.error({ err, step: h.name }, "shutdown step failed");
          }
        }),
      );
      if ((await Promise.race([run, deadline])) === "timeout") {
        this.log.error({ phase, steps: steps.map((s) => s.name) }, "shutdown deadline passed; forcing exit");
        return 1;
      }
    }
    clearTimeout(timer);
    this.log.info({ ms: Date.now() - started }, "shutdown complete");
    return failed ? 1 : 0;
  }

  /**
   * Installs SIGTERM/SIGINT handlers that run shutdown and exit with its code. A second signal exits at once.
   */
  installSignalHandlers(exit: (code: number) => void = (code) => process.exit(code)): void {
    const onSignal = (signal: NodeJS.Signals) => {
      if (this.shuttingDown) {
        this.log.warn({ signal }, "second signal: exiting now");
        exit(1);
        return;
      }
      void this.shutdown(signal).then(exit);
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  }
}
