import { jetstreamManager } from "@tokenmesh/events";
import {
  type Budget,
  type GetUsageRequest,
  type GetUsageResponse,
  Period,
  Scope,
  type SetBudgetRequest,
  type SetBudgetResponse,
} from "@tokenmesh/proto/cost/v1/cost";
import type { BudgetThresholdCrossed } from "@tokenmesh/proto/events/v1/events";
import { callUnary } from "@tokenmesh/runtime";
import { waitFor } from "@tokenmesh/testing";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { dayKey, monthKey } from "../src/domain/periods.js";
import { busClient, type RunningCost, startCost, unique, usage } from "./harness.js";

const EVENTS = 2_000;

describe("budget threshold alerts", () => {
  const natsUrl = inject("natsUrl");
  const redisUrl = inject("redisUrl");
  const tag = unique("alerts");
  const durable = unique("cost_alerts");
  const team = `${tag}-team`;
  const key = `${tag}-key`;
  const user = `${tag}-user`;
  let bus: Awaited<ReturnType<typeof busClient>>;
  let replicas: RunningCost[] = [];
  let crashes = 0;

  beforeAll(async () => {
    bus = await busClient(natsUrl);
    // Two replicas share the ledger and the durable consumer. Each "crashes" the first time an event raised
    // alerts, after recording it and before publishing: the alerts must come out once anyway.
    const start = () =>
      startCost({
        natsUrl,
        redisUrl,
        prefix: `${tag}:`,
        durable,
        env: { COST_CONSUMER_CONCURRENCY: "64" },
        afterRecord: (_rid, delivery, result) => {
          if (result.alerts.length > 0 && delivery.deliveryCount === 1) {
            crashes++;
            throw new Error("simulated crash before publishing alerts");
          }
        },
      });
    replicas = await Promise.all([start(), start()]);
  });

  afterAll(async () => {
    await Promise.all(replicas.map((r) => r.stop()));
    await bus?.close();
  });

  const setBudget = (r: RunningCost, budget: Budget) =>
    callUnary<SetBudgetRequest, SetBudgetResponse>(r.client.setBudget.bind(r.client), { budget });

  const ours = (a: BudgetThresholdCrossed) => [team, key, user].includes(a.id);
  const alertId = (a: BudgetThresholdCrossed) => `${a.scope}:${a.id}:${a.period}:${a.periodKey}:${a.threshold}`;

  it("publishes each threshold once per period with two replicas consuming at once", { timeout: 120_000 }, async () => {
    const [a, b] = replicas as [RunningCost, RunningCost];
    await setBudget(a, {
      scope: Scope.SCOPE_TEAM,
      id: team,
      period: Period.PERIOD_DAY,
      limitUsd: 1,
      hard: false,
      thresholds: [],
    });
    await setBudget(b, {
      scope: Scope.SCOPE_KEY,
      id: key,
      period: Period.PERIOD_MONTH,
      limitUsd: 0.5,
      hard: true,
      thresholds: [0.25, 0.5, 0.75, 1],
    });
    await setBudget(a, {
      scope: Scope.SCOPE_USER,
      id: user,
      period: Period.PERIOD_MONTH,
      limitUsd: 2,
      hard: false,
      thresholds: [1, 0.5],
    });

    // $0.0045 per event (m-large: 1000 in × $3/M + 100 out × $15/M): $9 in all, past every budget. 10 % duplicates.
    const sends: Promise<unknown>[] = [];
    for (let i = 0; i < EVENTS; i++) {
      const ev = usage({
        requestId: `${tag}-r${i}`,
        keyId: key,
        team,
        user,
        model: "m-large",
        inputTokens: 1000,
        outputTokens: 100,
      });
      sends.push(bus.publishUsage(ev));
      if (i % 10 === 0) sends.push(bus.publishUsage(ev, `${ev.requestId}:dup`));
      if (sends.length >= 500) await Promise.all(sends.splice(0));
    }
    await Promise.all(sends);

    const jsm = await jetstreamManager(bus.nc);
    await waitFor(
      async () => {
        const info = await jsm.consumers.info("LLM_USAGE", durable);
        if (info.num_pending > 0 || info.num_ack_pending > 0) return false;
        const u = await callUnary<GetUsageRequest, GetUsageResponse>(a.client.getUsage.bind(a.client), {
          scope: Scope.SCOPE_TEAM,
          id: team,
          period: Period.PERIOD_DAY,
          startDay: "",
          endDay: "",
        });
        return u.totals?.requests === EVENTS;
      },
      { timeoutMs: 90_000, description: "every usage event to be recorded and acknowledged" },
    );

    const alerts = await waitFor(
      async () => {
        const found = await bus.alerts(ours);
        return found.length >= 9 ? found : undefined;
      },
      { timeoutMs: 30_000, description: "nine alerts" },
    );
    const now = new Date();
    expect(alerts.map(alertId).sort()).toEqual(
      [
        `team:${team}:day:${dayKey(now)}:0.5`,
        `team:${team}:day:${dayKey(now)}:0.8`,
        `team:${team}:day:${dayKey(now)}:1`,
        `key:${key}:month:${monthKey(now)}:0.25`,
        `key:${key}:month:${monthKey(now)}:0.5`,
        `key:${key}:month:${monthKey(now)}:0.75`,
        `key:${key}:month:${monthKey(now)}:1`,
        `user:${user}:month:${monthKey(now)}:0.5`,
        `user:${user}:month:${monthKey(now)}:1`,
      ].sort(),
    );
    for (const alert of alerts) {
      expect(alert.spentUsd).toBeGreaterThanOrEqual(alert.threshold * alert.budgetUsd - 1e-9);
      // Crossed by the event that reached it: at most one event's cost past the threshold.
      expect(alert.spentUsd).toBeLessThan(alert.threshold * alert.budgetUsd + 0.0045 + 1e-9);
      expect(alert.hard).toBe(alert.scope === "key");
    }
    expect(crashes).toBeGreaterThanOrEqual(1);
  });

  it("raises thresholds already reached when a budget is set below what was spent, once", async () => {
    const [a, b] = replicas as [RunningCost, RunningCost];
    const budget: Budget = {
      scope: Scope.SCOPE_USER,
      id: user,
      period: Period.PERIOD_DAY,
      limitUsd: 3,
      hard: false,
      thresholds: [],
    };
    await setBudget(a, budget);
    await setBudget(b, budget);
    // SetBudget answers only once JetStream has stored the alerts it raised (publishAlerts awaits each PubAck), and
    // the usage consumer was drained by the test before: both calls have had their chance, so an alert raised twice
    // is already in the stream and this one read sees it.
    const found = await bus.alerts((x) => x.id === user && x.period === "day");
    expect(found.length).toBe(3);
    expect(found.map((x) => x.threshold).sort()).toEqual([0.5, 0.8, 1]);
    expect(found.every((x) => Math.abs(x.spentUsd - 9) < 1e-9)).toBe(true);
  });
});
