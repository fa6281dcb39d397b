import { AppError } from "@tokenmesh/runtime";
import type { BudgetScope, Period } from "./periods.js";
import { usdToNano } from "./pricing.js";

/** Fractions of the limit that raise an alert when a budget sets none. */
export const DEFAULT_THRESHOLDS: readonly number[] = [0.5, 0.8, 1];

/** A spending limit for one key, team or user over one UTC day or month. */
export interface Budget {
  scope: BudgetScope;
  id: string;
  period: Period;
  limitUsd: number;
  /** Hard budgets are enforced before requests by reservations; soft ones only alert. */
  hard: boolean;
  /** Ascending, distinct fractions of the limit (> 0) that raise an alert when spending reaches them. */
  thresholds: number[];
}

/** A threshold reached: what `llm.budget.threshold.v1` carries. */
export interface BudgetAlert {
  scope: BudgetScope;
  id: string;
  period: Period;
  periodKey: string;
  spentNano: number;
  limitNano: number;
  threshold: number;
  hard: boolean;
  /** Unique per budget, period and threshold: the event's Nats-Msg-Id, so JetStream drops a re-publish. */
  key: string;
}

/**
 * Validates a budget and fills in defaults: thresholds default to 50/80/100 %, are sorted and deduplicated.
 * Throws INVALID_ARGUMENT naming the field at fault.
 */
export function normalizeBudget(input: Budget): Budget {
  if (input.id === "") throw invalid("budget.id", "a budget needs the id of its key, team or user");
  if (!Number.isFinite(input.limitUsd) || input.limitUsd < 0 || input.limitUsd > 1e9) {
    throw invalid("budget.limit_usd", "limit_usd must be between 0 and 1e9");
  }
  const thresholds = input.thresholds.length === 0 ? [...DEFAULT_THRESHOLDS] : [...new Set(input.thresholds)];
  if (thresholds.length > 10) throw invalid("budget.thresholds", "at most 10 thresholds");
  for (const t of thresholds) {
    if (!Number.isFinite(t) || t <= 0 || t > 10)
      throw invalid("budget.thresholds", "thresholds are fractions in (0, 10]");
  }
  thresholds.sort((a, b) => a - b);
  return { ...input, thresholds };
}

/** The Redis hash field a budget is stored under. */
export function budgetField(scope: BudgetScope, id: string, period: Period): string {
  return `${scope}:${id}:${period}`;
}

/**
 * The stored form of a budget, read by the Lua scripts: `limitNano|hard|t:nano,t:nano,…`, where each threshold
 * carries its amount in nano-USD so the scripts compare integers only.
 */
export function encodeBudget(budget: Budget): string {
  const limit = usdToNano(budget.limitUsd);
  const thresholds = budget.thresholds.map((t) => `${t}:${Math.round(t * limit)}`).join(",");
  return `${limit}|${budget.hard ? 1 : 0}|${thresholds}`;
}

/** Parses what {@link encodeBudget} stored; undefined when the record is malformed. */
export function decodeBudget(scope: BudgetScope, id: string, period: Period, record: string): Budget | undefined {
  const [limit, hard, thresholds] = record.split("|");
  if (limit === undefined || hard === undefined || thresholds === undefined) return undefined;
  return {
    scope,
    id,
    period,
    limitUsd: Number(limit) / 1e9,
    hard: hard === "1",
    thresholds: thresholds === "" ? [] : thresholds.split(",").map((p) => Number(p.split(":")[0])),
  };
}

function invalid(param: string, message: string): AppError {
  return new AppError("INVALID_ARGUMENT", message, { param });
}
