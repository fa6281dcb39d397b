import { ChatResponse } from "@tokenmesh/proto/common/v1/chat";
import { RouteInfo } from "@tokenmesh/proto/router/v1/router";
import type { Logger } from "@tokenmesh/telemetry";
import type { Redis } from "ioredis";

/** A speculative request's upgrade: the slow model's answer, for the key that asked. */
export interface Upgrade {
  /** The key that made the request; only it may fetch the upgrade. */
  keyId: string;
  status: "pending" | "ready" | "failed";
  route?: RouteInfo | undefined;
  response?: ChatResponse | undefined;
  error?: string | undefined;
}

/**
 * Speculative upgrades in Redis (`<prefix>upgrade:<id>`, JSON, expiring after the retention period), so any router
 * replica can answer GetUpgrade whichever replica ran the slow model. Also tracks the slow runs still going, so
 * shutdown can let them finish (their usage must be reported even though no client waits for them).
 */
export class RedisUpgradeStore {
  private readonly running = new Set<Promise<unknown>>();

  constructor(
    private readonly redis: Redis,
    private readonly logger: Logger,
    private readonly options: { prefix?: string; retentionMs?: number } = {},
  ) {}

  private key(id: string): string {
    return `${this.options.prefix ?? ""}upgrade:${id}`;
  }

  /** Stores (or replaces) an upgrade for the retention period. Never throws: a failed write is logged. */
  async put(id: string, upgrade: Upgrade): Promise<void> {
    const value = JSON.stringify({
      v: 1,
      keyId: upgrade.keyId,
      status: upgrade.status,
      route: upgrade.route === undefined ? undefined : RouteInfo.toJSON(upgrade.route),
      response: upgrade.response === undefined ? undefined : ChatResponse.toJSON(upgrade.response),
      error: upgrade.error,
    });
    try {
      await this.redis.set(this.key(id), value, "PX", this.options.retentionMs ?? 3_600_000);
    } catch (err) {
      this.logger.warn({ err: (err as Error).message, upgrade_id: id }, "upgrade not stored");
    }
  }

  /** The upgrade, or undefined when unknown or expired. */
  async get(id: string): Promise<Upgrade | undefined> {
    const raw = await this.redis.get(this.key(id));
    if (raw === null) return undefined;
    const v = JSON.parse(raw) as {
      keyId: string;
      status: Upgrade["status"];
      route?: unknown;
      response?: unknown;
      error?: string;
    };
    return {
      keyId: v.keyId,
      status: v.status,
      route: v.route === undefined ? undefined : RouteInfo.fromJSON(v.route),
      response: v.response === undefined ? undefined : ChatResponse.fromJSON(v.response),
      error: v.error,
    };
  }

  /** Keeps a slow run in view until it ends. */
  track(run: Promise<unknown>): void {
    this.running.add(run);
    void run.finally(() => this.running.delete(run));
  }

  /** Resolves once every slow run started so far has ended. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.running]);
  }
}
