import { dayKey, monthKey } from "./periods.js";
import { costNano, nanoToUsd, type Price } from "./pricing.js";

/** The fields of a usage event the ledger needs (a plain copy of `UsageRecorded`'s). */
export interface UsageFacts {
  requestId: string;
  timestamp?: string | undefined;
  keyId: string;
  team: string;
  user: string;
  modelRequested: string;
  model: string;
  inputTokens: number;
  outputTokens: number;
  cachedTokens: number;
  cacheHit: boolean;
  status: string;
  reservationId: string;
}

/** One priced usage event, ready to be added to the ledger. */
export interface LedgerEntry {
  /** The idempotency key: a request is counted once whatever how often its event is delivered. */
  requestId: string;
  reservationId: string;
  /** UTC day and month of the event's own timestamp, so a late redelivery lands in the right period. */
  day: string;
  month: string;
  keyId: string;
  team: string;
  user: string;
  /** The served model (the requested one when none served it). */
  model: string;
  costNano: number;
  inputTokens: number;
  outputTokens: number;
  cachedTokens: number;
  /** Any status other than "ok" (error, blocked, cancelled). */
  error: boolean;
}

/** The label used when an event names no model at all. */
export const NO_MODEL = "unknown";

/**
 * Prices a usage event. The period comes from the event's timestamp (processing time when it has none), so a
 * redelivery days later still counts where the request happened. Cache hits cost nothing: no provider was paid.
 * `price` is undefined when the served model has no known price; the event is then recorded at cost 0.
 */
export function toLedgerEntry(
  facts: UsageFacts,
  price: Price | undefined,
  fallbackRequestId: string,
  now: Date,
): LedgerEntry {
  const parsed = facts.timestamp ? new Date(facts.timestamp) : now;
  const at = Number.isNaN(parsed.getTime()) ? now : parsed;
  const tokens = { input: facts.inputTokens, output: facts.outputTokens, cached: facts.cachedTokens };
  return {
    requestId: facts.requestId || fallbackRequestId,
    reservationId: facts.reservationId,
    day: dayKey(at),
    month: monthKey(at),
    keyId: facts.keyId,
    team: facts.team,
    user: facts.user,
    model: facts.model || facts.modelRequested || NO_MODEL,
    costNano: price && !facts.cacheHit ? costNano(price, tokens) : 0,
    inputTokens: Math.max(0, facts.inputTokens),
    outputTokens: Math.max(0, facts.outputTokens),
    cachedTokens: Math.max(0, facts.cachedTokens),
    error: facts.status !== "ok",
  };
}

/** Usage totals over some period. Cost in USD; everything else a count. */
export interface Totals {
  costUsd: number;
  requests: number;
  inputTokens: number;
  outputTokens: number;
  cachedTokens: number;
  errors: number;
}

/** Totals of a scope, overall and per model. */
export interface UsageReport {
  totals: Totals;
  byModel: Record<string, Totals>;
}

/** Hash field suffixes of a day's usage hash: `<model>|<suffix>` → integer. */
export const FIELD = { cost: "c", requests: "r", input: "i", output: "o", cached: "k", errors: "e" } as const;

function emptyTotals(): Totals {
  return { costUsd: 0, requests: 0, inputTokens: 0, outputTokens: 0, cachedTokens: 0, errors: 0 };
}

/**
 * Sums day hashes (`<model>|<field>` → integer, as the ledger script writes them) into totals per model and
 * overall. Cost is summed in nano-USD and converted once, so the result is exact to the nano-USD.
 */
export function sumUsage(days: Record<string, string>[]): UsageReport {
  const nano = new Map<string, number>();
  const byModel: Record<string, Totals> = {};
  for (const hash of days) {
    for (const [field, raw] of Object.entries(hash)) {
      const sep = field.lastIndexOf("|");
      if (sep < 0) continue;
      const model = field.slice(0, sep);
      const value = Number(raw);
      let t = byModel[model];
      if (!t) {
        t = emptyTotals();
        byModel[model] = t;
      }
      switch (field.slice(sep + 1)) {
        case FIELD.cost:
          nano.set(model, (nano.get(model) ?? 0) + value);
          break;
        case FIELD.requests:
          t.requests += value;
          break;
        case FIELD.input:
          t.inputTokens += value;
          break;
        case FIELD.output:
          t.outputTokens += value;
          break;
        case FIELD.cached:
          t.cachedTokens += value;
          break;
        case FIELD.errors:
          t.errors += value;
          break;
      }
    }
  }
  const totals = emptyTotals();
  let totalNano = 0;
  for (const [model, t] of Object.entries(byModel)) {
    const n = nano.get(model) ?? 0;
    t.costUsd = nanoToUsd(n);
    totalNano += n;
    totals.requests += t.requests;
    totals.inputTokens += t.inputTokens;
    totals.outputTokens += t.outputTokens;
    totals.cachedTokens += t.cachedTokens;
    totals.errors += t.errors;
  }
  totals.costUsd = nanoToUsd(totalNano);
  return { totals, byModel };
}
