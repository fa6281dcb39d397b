import { DeliverPolicy, type JetStreamClient } from "@nats-io/jetstream";
import { BudgetThresholdEvent, decodeEvent } from "@tokenmesh/events";
import type { BudgetThresholdCrossed } from "@tokenmesh/proto/events/v1/events";
import type { Logger } from "@tokenmesh/telemetry";
import type { Redis } from "ioredis";
import type { Budgets } from "../domain/ports.js";
import type { RedisHardScopes } from "./hard-scopes.js";

/** How often the hard-scope list is reconciled with the cost service (budgets set without this gateway's API). */
const RECONCILE_MS = 30_000;

function periodKey(period: string, now = new Date()): string {
  const iso = now.toISOString();
  return period === "day" ? iso.slice(0, 10) : iso.slice(0, 7);
}

/**
 * What the gateway knows about budgets without a round trip per request:
 * - soft budgets at 100 %, from `llm.budget.threshold.v1` (an ordered consumer per replica replays the stream at
 *   start, so a new replica knows the current period's state); a block lapses when its period rolls over;
 * - which scopes have a hard budget (RedisHardScopes: exact; pushed to a watching replica, else read per request),
 *   so only those call Reserve.
 */
export class BudgetView implements Budgets {
  private readonly blockedUntil = new Map<string, { period: string; key: string }>();
  private timer: NodeJS.Timeout | undefined;
  private reconcileTimer: NodeJS.Timeout | undefined;
  private stopConsumer: (() => Promise<void>) | undefined;

  constructor(
    private readonly hard: RedisHardScopes,
    /** The cost service's list of hard scopes (ListHardScopes). */
    private readonly listHardScopes: () => Promise<string[]>,
    private readonly logger: Logger,
    /**
     * Whether a blocked scope is still at or over its soft budget (the cost service's view). Checked every
     * second for the few blocked scopes, so a budget raised through any replica lifts the block on all of them.
     */
    private readonly stillOver: (scope: string, id: string, period: string) => Promise<boolean>,
  ) {}

  /**
   * Starts watching: `subscriber` (a Redis connection of its own) carries hard-scope changes, so requests read no
   * Redis key for them; the threshold events are replayed; blocks and the hard-scope list are rechecked periodically.
   */
  async start(js: JetStreamClient, subscriber?: Redis): Promise<void> {
    if (subscriber !== undefined) await this.hard.watch(subscriber);
    await this.reconcile();
    this.timer = setInterval(() => void this.recheckBlocked(), 1_000);
    this.timer.unref();
    this.reconcileTimer = setInterval(() => void this.reconcile(), RECONCILE_MS);
    this.reconcileTimer.unref();
    // LLM_BUDGET holds only threshold events, so no subject filter (which also keeps nats-server < 2.10 happy).
    const consumer = await js.consumers.get(BudgetThresholdEvent.stream, { deliver_policy: DeliverPolicy.All });
    const messages = await consumer.consume();
    this.stopConsumer = async () => {
      await messages.close();
    };
    void (async () => {
      for await (const m of messages) {
        try {
          this.apply(decodeEvent(BudgetThresholdEvent, m.data));
        } catch (err) {
          this.logger.warn({ err }, "bad budget threshold event");
        }
      }
    })();
  }

  /** Records a threshold crossing; only soft budgets reaching 100 % block here (hard ones are held by Reserve). */
  apply(e: BudgetThresholdCrossed): void {
    if (e.hard || e.threshold < 1) return;
    if (e.periodKey !== periodKey(e.period)) return;
    this.blockedUntil.set(`${e.scope}:${e.id}`, { period: e.period, key: e.periodKey });
  }

  /** Lifts a block at once (the budget was raised through this replica's admin API). */
  unblock(scope: string, id: string): void {
    this.blockedUntil.delete(`${scope}:${id}`);
  }

  private isBlocked(scope: string, id: string): boolean {
    if (!id) return false;
    const b = this.blockedUntil.get(`${scope}:${id}`);
    if (!b) return false;
    if (b.key !== periodKey(b.period)) {
      this.blockedUntil.delete(`${scope}:${id}`);
      return false;
    }
    return true;
  }

  blocked(keyId: string, team: string, user: string): boolean {
    return this.isBlocked("key", keyId) || this.isBlocked("team", team) || this.isBlocked("user", user);
  }

  hasHard(keyId: string, team: string, user: string): Promise<boolean> {
    return this.hard.has(keyId, team, user);
  }

  /** Records a budget just set through this gateway's admin API; every replica enforces it from now on. */
  async budgetSet(scope: string, id: string, scopeHard: boolean): Promise<void> {
    await this.hard.update(scope, id, scopeHard);
    this.unblock(scope, id);
  }

  private async recheckBlocked(): Promise<void> {
    for (const [scoped, b] of this.blockedUntil) {
      const i = scoped.indexOf(":");
      const [scope, id] = [scoped.slice(0, i), scoped.slice(i + 1)];
      try {
        if (!(await this.stillOver(scope, id, b.period))) this.blockedUntil.delete(scoped);
      } catch (err) {
        this.logger.warn({ err: (err as Error).message, scope, id }, "cannot recheck a budget block");
      }
    }
  }

  private async reconcile(): Promise<void> {
    try {
      await this.hard.reconcile(await this.listHardScopes());
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, "cannot reconcile hard budget scopes with the cost service");
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    clearInterval(this.reconcileTimer);
    await this.stopConsumer?.();
    await this.hard.unwatch();
  }
}
