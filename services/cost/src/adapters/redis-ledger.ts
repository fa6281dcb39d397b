import { createHash } from "node:crypto";
import { afterLinger } from "@tokenmesh/runtime";
import type { Redis } from "ioredis";
import { type Budget, type BudgetAlert, budgetField, decodeBudget, encodeBudget } from "../domain/budget.js";
import {
  BUDGET_SCOPES,
  type BudgetScope,
  PERIODS,
  type Period,
  periodKey,
  type UsageScope,
} from "../domain/periods.js";
import { type LedgerEntry, sumUsage, type UsageReport } from "../domain/usage.js";
import {
  RECORD_SCRIPT,
  RELEASE_SCRIPT,
  RESERVE_SCRIPT,
  SET_BUDGET_SCRIPT,
  STATUS_SCRIPT,
  SWEEP_SCRIPT,
} from "./ledger.scripts.js";

const DAY_S = 86_400;
/** Longer than the usage stream's max age (30 d): a redelivery or replay of any stored event is still recognised. */
const SEEN_TTL_S = 31 * DAY_S;
const DAY_SPENT_TTL_S = 8 * DAY_S;
const MONTH_SPENT_TTL_S = 62 * DAY_S;
const ALERT_TTL_S = 62 * DAY_S;
const EVENT_FIELDS = 13;

/** A Lua script run by EVALSHA, loaded with EVAL the first time a server does not know it. */
class LuaScript {
  private readonly sha: string;
  constructor(private readonly source: string) {
    this.sha = createHash("sha1").update(source).digest("hex");
  }
  async run<T>(redis: Redis, args: (string | number)[]): Promise<T> {
    try {
      return (await redis.evalsha(this.sha, 0, ...args)) as T;
    } catch (err) {
      if (!(err as Error).message?.includes("NOSCRIPT")) throw err;
      return (await redis.eval(this.source, 0, ...args)) as T;
    }
  }
}

const scripts = {
  record: new LuaScript(RECORD_SCRIPT),
  reserve: new LuaScript(RESERVE_SCRIPT),
  release: new LuaScript(RELEASE_SCRIPT),
  sweep: new LuaScript(SWEEP_SCRIPT),
  status: new LuaScript(STATUS_SCRIPT),
  setBudget: new LuaScript(SET_BUDGET_SCRIPT),
};

export interface LedgerOptions {
  /** Prefix of every key (`cost:`); give it a hash tag (`{cost}:`) on Redis Cluster. */
  prefix: string;
  /** A reservation whose usage never comes is released after this long. */
  reservationTimeoutMs: number;
  /** How long per-day usage hashes are kept. */
  retentionDays: number;
  /** Most events recorded by one script call. */
  maxBatch: number;
  /**
   * How long an event waits for others to share its script call (ms; 0: only the events of the same turn of the
   * event loop). Off the request path: a few ms turn one Redis call (and one NATS ack write) per event into one per
   * batch at a few hundred events a second.
   */
  lingerMs?: number;
}

/** The outcome of recording one usage event. */
export interface RecordResult {
  /** The request was already counted (a redelivery or a duplicate event); nothing was added. */
  duplicate: boolean;
  /** Alerts this request raised that may not have been published yet: publish them, then `clearAlerts`. */
  alerts: BudgetAlert[];
}

/** The outcome of a reservation. */
export type ReserveOutcome =
  | { status: "none" }
  | { status: "held"; amountNano: number }
  | { status: "refused"; budget: string; limitNano: number; spentNano: number; heldNano: number };

/** What a reservation is for. */
export interface ReserveInput {
  reservationId: string;
  keyId: string;
  team: string;
  user: string;
  amountNano: number;
}

/** A budget with what its current period has spent and holds. */
export interface BudgetStatus {
  budget: Budget | undefined;
  spentNano: number;
  heldNano: number;
}

interface Pending {
  entry: LedgerEntry;
  resolve: (r: RecordResult) => void;
  reject: (err: unknown) => void;
}

interface RawAlert {
  s: BudgetScope;
  i: string;
  p: Period;
  k: string;
  sp: string;
  l: string;
  t: string;
  h: string;
  key: string;
}

function parseAlerts(json: string): BudgetAlert[] {
  if (json === "") return [];
  return (JSON.parse(json) as RawAlert[]).map((a) => ({
    scope: a.s,
    id: a.i,
    period: a.p,
    periodKey: a.k,
    spentNano: Number(a.sp),
    limitNano: Number(a.l),
    threshold: Number(a.t),
    hard: a.h === "1",
    key: a.key,
  }));
}

/**
 * The usage ledger, budgets and reservations in Redis. Every state change is one Lua script, so it is atomic
 * across any number of cost replicas sharing the Redis server.
 *
 * `record` batches: events arriving within `lingerMs` of the first (or in the same turn of the event loop; up to
 * `maxBatch`) go to Redis in one script call, each still guarded on its own by its request id. A failed call fails
 * every event of its batch, and they are redelivered; the ones that were counted are then recognised as duplicates.
 */
export class RedisLedger {
  private queue: Pending[] = [];
  private scheduled = false;
  private readonly p: string;

  constructor(
    private readonly redis: Redis,
    private readonly options: LedgerOptions,
  ) {
    this.p = options.prefix;
  }

  /**
   * Adds a priced usage event to the ledger exactly once per request id: settles its reservation, adds it to the
   * key, team, user and model totals of its day (and the spent counters of its day and month), and raises the
   * thresholds it crossed. On a request already counted, nothing is added and the alerts it raised that were
   * not cleared yet are returned again, so a crash between recording and publishing loses none.
   */
  record(entry: LedgerEntry): Promise<RecordResult> {
    return new Promise((resolve, reject) => {
      this.queue.push({ entry, resolve, reject });
      if (this.queue.length >= this.options.maxBatch) this.flush();
      else if (!this.scheduled) {
        this.scheduled = true;
        afterLinger(this.options.lingerMs ?? 0, () => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    if (this.queue.length === 0) return;
    const batch = this.queue;
    this.queue = [];
    const args: (string | number)[] = [
      this.p,
      SEEN_TTL_S,
      this.options.retentionDays * DAY_S,
      DAY_SPENT_TTL_S,
      MONTH_SPENT_TTL_S,
      ALERT_TTL_S,
    ];
    for (const { entry: e } of batch) {
      args.push(
        e.requestId,
        e.reservationId,
        e.day,
        e.month,
        e.model,
        e.costNano,
        e.inputTokens,
        e.outputTokens,
        e.cachedTokens,
        e.error ? 1 : 0,
        e.keyId,
        e.team,
        e.user,
      );
    }
    if (args.length !== 6 + batch.length * EVENT_FIELDS) throw new Error("ledger batch misaligned");
    scripts.record.run<string[]>(this.redis, args).then(
      (replies) => {
        batch.forEach((p, i) => {
          const r = replies[i] ?? "n";
          p.resolve({ duplicate: r[0] === "d", alerts: parseAlerts(r.slice(1)) });
        });
      },
      (err) => {
        for (const p of batch) p.reject(err);
      },
    );
  }

  /** Forgets the alerts a request raised, once they are stored by JetStream. */
  async clearAlerts(requestId: string): Promise<void> {
    await this.redis.del(`${this.p}alerts:${requestId}`);
  }

  /**
   * Holds `amountNano` against every hard budget of the key, team and user for the current day and month, all or
   * nothing: it succeeds only if, for each, spent + held + amount ≤ limit. Expired holds are released first.
   * Idempotent by reservation id.
   */
  async reserve(input: ReserveInput, now: Date): Promise<ReserveOutcome> {
    const args: (string | number)[] = [
      this.p,
      input.reservationId,
      Math.max(0, Math.round(input.amountNano)),
      now.getTime(),
      now.getTime() + this.options.reservationTimeoutMs,
      Math.ceil(this.options.reservationTimeoutMs / 1000) + 2 * DAY_S,
    ];
    const ids: Record<BudgetScope, string> = { key: input.keyId, team: input.team, user: input.user };
    for (const scope of BUDGET_SCOPES) {
      if (ids[scope] === "") continue;
      for (const period of PERIODS) {
        args.push(budgetField(scope, ids[scope], period), `${scope}:${ids[scope]}:${periodKey(period, now)}`);
      }
    }
    const r = await scripts.reserve.run<(string | number)[]>(this.redis, args);
    if (r[0] === 0) return { status: "none" };
    if (r[0] === 1) return { status: "held", amountNano: Number(r[1]) };
    return {
      status: "refused",
      budget: String(r[1]),
      limitNano: Number(r[2]),
      spentNano: Number(r[3]),
      heldNano: Number(r[4]),
    };
  }

  /** Releases a reservation; true when it still held something (not already settled, released or expired). */
  async release(reservationId: string): Promise<boolean> {
    return (await scripts.release.run<number>(this.redis, [this.p, reservationId])) === 1;
  }

  /** Releases every expired reservation; returns the number of holds still in force. */
  async sweep(now: Date): Promise<number> {
    return Number(await scripts.sweep.run<number>(this.redis, [this.p, now.getTime()]));
  }

  /** Usage of a scope over the given UTC days. */
  async usage(scope: UsageScope, id: string, days: string[]): Promise<UsageReport> {
    const pipeline = this.redis.pipeline();
    for (const day of days) pipeline.hgetall(`${this.p}u:${scope}:${id}:${day}`);
    const results = (await pipeline.exec()) ?? [];
    const hashes: Record<string, string>[] = [];
    for (const [err, value] of results) {
      if (err) throw err;
      hashes.push(value as Record<string, string>);
    }
    return sumUsage(hashes);
  }

  /**
   * Stores a budget (replacing the one of the same scope, id and period) and returns the alerts for thresholds
   * that the current period's spending already reached and that were not raised before.
   */
  async setBudget(budget: Budget, now: Date): Promise<BudgetAlert[]> {
    const pk = periodKey(budget.period, now);
    const json = await scripts.setBudget.run<string>(this.redis, [
      this.p,
      budgetField(budget.scope, budget.id, budget.period),
      encodeBudget(budget),
      `${budget.scope}:${budget.id}:${pk}`,
      pk,
      ALERT_TTL_S,
    ]);
    return parseAlerts(json);
  }

  /** The scopes (`key:<id>`, `team:<t>`, `user:<u>`) with a hard budget in any period. */
  async hardScopes(): Promise<string[]> {
    return this.redis.smembers(`${this.p}hard-scopes`);
  }

  /** A budget (if set) with its current period's spending and holds. */
  async budgetStatus(scope: BudgetScope, id: string, period: Period, now: Date): Promise<BudgetStatus> {
    const field = budgetField(scope, id, period);
    const [record, spent, held] = await scripts.status.run<[string | null, string, string]>(this.redis, [
      this.p,
      field,
      `${scope}:${id}:${periodKey(period, now)}`,
      now.getTime(),
    ]);
    return {
      budget: record ? decodeBudget(scope, id, period, record) : undefined,
      spentNano: Number(spent),
      heldNano: Number(held),
    };
  }
}
