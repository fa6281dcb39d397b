import { randomUUID } from "node:crypto";
import type { EventPublisher } from "@tokenmesh/events";
import {
  type Budget as BudgetMessage,
  type CostServiceService,
  Period as PeriodEnum,
  Scope as ScopeEnum,
  type UsageTotals,
} from "@tokenmesh/proto/cost/v1/cost";
import { AppError, BudgetExceededError, type Handlers } from "@tokenmesh/runtime";
import type { Logger } from "@tokenmesh/telemetry";
import type { PriceTable } from "../adapters/price-table.js";
import type { RedisLedger } from "../adapters/redis-ledger.js";
import { type Budget, normalizeBudget } from "../domain/budget.js";
import {
  type BudgetScope,
  dayKey,
  daysBetween,
  monthToDate,
  type Period,
  parseDay,
  type UsageScope,
} from "../domain/periods.js";
import { nanoToUsd, worstCaseNano } from "../domain/pricing.js";
import type { Totals } from "../domain/usage.js";
import { publishAlerts } from "../events/alert.publisher.js";
import { costMetrics } from "../metrics.js";

/** Longest range GetUsage sums, in days. */
const MAX_RANGE_DAYS = 400;

export interface CostHandlerDeps {
  ledger: RedisLedger;
  prices: PriceTable;
  publisher: EventPublisher;
  logger: Logger;
  now?: () => Date;
}

const usageScopes: Partial<Record<ScopeEnum, UsageScope>> = {
  [ScopeEnum.SCOPE_KEY]: "key",
  [ScopeEnum.SCOPE_TEAM]: "team",
  [ScopeEnum.SCOPE_USER]: "user",
  [ScopeEnum.SCOPE_MODEL]: "model",
};
const scopeEnums: Record<BudgetScope, ScopeEnum> = {
  key: ScopeEnum.SCOPE_KEY,
  team: ScopeEnum.SCOPE_TEAM,
  user: ScopeEnum.SCOPE_USER,
};

function budgetScope(scope: ScopeEnum): BudgetScope {
  const s = usageScopes[scope];
  if (s === undefined || s === "model") {
    throw new AppError("INVALID_ARGUMENT", "budgets apply to a key, team or user", { param: "scope" });
  }
  return s;
}

function period(p: PeriodEnum): Period {
  if (p === PeriodEnum.PERIOD_DAY) return "day";
  if (p === PeriodEnum.PERIOD_MONTH) return "month";
  throw new AppError("INVALID_ARGUMENT", "period must be PERIOD_DAY or PERIOD_MONTH", { param: "period" });
}

function requireId(id: string): string {
  if (id === "") throw new AppError("INVALID_ARGUMENT", "id is required", { param: "id" });
  return id;
}

function toMessage(b: Budget): BudgetMessage {
  return {
    scope: scopeEnums[b.scope],
    id: b.id,
    period: b.period === "day" ? PeriodEnum.PERIOD_DAY : PeriodEnum.PERIOD_MONTH,
    limitUsd: b.limitUsd,
    hard: b.hard,
    thresholds: b.thresholds,
  };
}

function totals(t: Totals): UsageTotals {
  return { ...t };
}

function usageDays(req: { period: PeriodEnum; startDay: string; endDay: string }, now: Date): string[] {
  if (req.startDay === "" && req.endDay === "") {
    // No range: the current period (the current day when none is named).
    return req.period === PeriodEnum.PERIOD_MONTH ? monthToDate(now) : [dayKey(now)];
  }
  const start = parseDay(req.startDay || req.endDay);
  const end = req.endDay === "" ? now : parseDay(req.endDay);
  if (!start) throw new AppError("INVALID_ARGUMENT", "start_day must be YYYY-MM-DD", { param: "start_day" });
  if (!end) throw new AppError("INVALID_ARGUMENT", "end_day must be YYYY-MM-DD", { param: "end_day" });
  const days = daysBetween(start, end);
  if (days.length === 0) throw new AppError("INVALID_ARGUMENT", "end_day is before start_day", { param: "end_day" });
  if (days.length > MAX_RANGE_DAYS) {
    throw new AppError("INVALID_ARGUMENT", `a range spans at most ${MAX_RANGE_DAYS} days`, { param: "start_day" });
  }
  return days;
}

/** The CostService handlers: proto ⇄ domain mapping around the ledger. */
export function costHandlers(deps: CostHandlerDeps): Handlers<typeof CostServiceService> {
  const { ledger, prices, publisher, logger } = deps;
  const now = deps.now ?? (() => new Date());
  return {
    async reserve(req) {
      if (req.keyId === "" && req.team === "" && req.user === "") {
        throw new AppError("INVALID_ARGUMENT", "a reservation needs a key, team or user", { param: "key_id" });
      }
      if (req.inputTokens < 0 || req.maxOutputTokens < 0) {
        throw new AppError("INVALID_ARGUMENT", "token counts cannot be negative", { param: "input_tokens" });
      }
      // The worst case over every model the request may end up on (its fallbacks, an `auto` tier).
      let amountNano = 0;
      for (const model of new Set([req.model, ...req.candidateModels])) {
        const pricing = prices.lookup(model);
        if (!pricing) {
          costMetrics.unknownModel.inc({ model });
          continue;
        }
        // A request that sets no max_tokens may produce up to the model's cap.
        const maxOutput = req.maxOutputTokens || pricing.maxOutputTokens;
        amountNano = Math.max(amountNano, worstCaseNano(pricing.price, req.inputTokens, maxOutput));
      }
      const reservationId = req.requestId || randomUUID();
      const at = now();
      const outcome = await ledger.reserve(
        { reservationId, keyId: req.keyId, team: req.team, user: req.user, amountNano },
        at,
      );
      costMetrics.reservations.inc({ outcome: outcome.status });
      if (outcome.status === "none") return { reservationId: "", heldUsd: 0 };
      if (outcome.status === "held") return { reservationId, heldUsd: nanoToUsd(outcome.amountNano) };
      const [scope, ...rest] = outcome.budget.split(":");
      const per = rest.pop();
      throw new BudgetExceededError(
        `Hard ${per === "day" ? "daily" : "monthly"} budget of ${scope} ${rest.join(":")} exceeded: limit $${nanoToUsd(outcome.limitNano)}, ` +
          `spent $${nanoToUsd(outcome.spentNano)}, held $${nanoToUsd(outcome.heldNano)}, ` +
          `this request up to $${nanoToUsd(amountNano)}`,
      );
    },

    async release(req) {
      if (req.reservationId === "") return { released: false };
      const released = await ledger.release(req.reservationId);
      if (released) costMetrics.released.inc();
      return { released };
    },

    async getUsage(req) {
      const scope = usageScopes[req.scope];
      if (!scope) throw new AppError("INVALID_ARGUMENT", "scope is required", { param: "scope" });
      const report = await ledger.usage(scope, requireId(req.id), usageDays(req, now()));
      const byModel: Record<string, UsageTotals> = {};
      for (const [model, t] of Object.entries(report.byModel)) byModel[model] = totals(t);
      return { totals: totals(report.totals), byModel };
    },

    async getBudget(req) {
      const status = await ledger.budgetStatus(budgetScope(req.scope), requireId(req.id), period(req.period), now());
      return {
        budget: status.budget ? toMessage(status.budget) : undefined,
        found: status.budget !== undefined,
        spentUsd: nanoToUsd(status.spentNano),
        heldUsd: nanoToUsd(status.heldNano),
      };
    },

    async setBudget(req) {
      const b = req.budget;
      if (!b) throw new AppError("INVALID_ARGUMENT", "budget is required", { param: "budget" });
      const budget = normalizeBudget({
        scope: budgetScope(b.scope),
        id: b.id,
        period: period(b.period),
        limitUsd: b.limitUsd,
        hard: b.hard,
        thresholds: b.thresholds,
      });
      const at = now();
      const alerts = await ledger.setBudget(budget, at);
      logger.info(
        { scope: budget.scope, id: budget.id, period: budget.period, limit_usd: budget.limitUsd, hard: budget.hard },
        "budget set",
      );
      // Thresholds already reached when the budget is set (or lowered) are crossed now.
      await publishAlerts(publisher, alerts, at);
      const scopeHard = (await ledger.hardScopes()).includes(`${budget.scope}:${budget.id}`);
      return { budget: toMessage(budget), scopeHard };
    },

    async listHardScopes() {
      return { scopes: await ledger.hardScopes() };
    },
  };
}
