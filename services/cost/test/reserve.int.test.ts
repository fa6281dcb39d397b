import {
  type Budget,
  type GetBudgetRequest,
  type GetBudgetResponse,
  Period,
  type ReleaseRequest,
  type ReleaseResponse,
  type ReserveRequest,
  type ReserveResponse,
  Scope,
  type SetBudgetRequest,
  type SetBudgetResponse,
} from "@tokenmesh/proto/cost/v1/cost";
import { type AppError, callUnary } from "@tokenmesh/runtime";
import { waitFor } from "@tokenmesh/testing";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { busClient, type RunningCost, startCost, unique, usage } from "./harness.js";

const reserve = (r: RunningCost, req: ReserveRequest) =>
  callUnary<ReserveRequest, ReserveResponse>(r.client.reserve.bind(r.client), req);
const release = (r: RunningCost, reservationId: string) =>
  callUnary<ReleaseRequest, ReleaseResponse>(r.client.release.bind(r.client), { reservationId });
const setBudget = (r: RunningCost, budget: Budget) =>
  callUnary<SetBudgetRequest, SetBudgetResponse>(r.client.setBudget.bind(r.client), { budget });
const getBudget = (r: RunningCost, req: GetBudgetRequest) =>
  callUnary<GetBudgetRequest, GetBudgetResponse>(r.client.getBudget.bind(r.client), req);

/** m-large: 20,000 input tokens × $3/M + 2,000 output tokens × $15/M = $0.09 worst case. */
const request = (requestId: string, keyId: string): ReserveRequest => ({
  requestId,
  keyId,
  team: "",
  user: "",
  model: "m-large",
  inputTokens: 20_000,
  maxOutputTokens: 2_000,
  candidateModels: [],
});

describe("reservations against hard budgets", () => {
  const natsUrl = inject("natsUrl");
  const redisUrl = inject("redisUrl");
  const tag = unique("reserve");
  let bus: Awaited<ReturnType<typeof busClient>>;
  let replicas: RunningCost[] = [];
  let shortLived: RunningCost;

  beforeAll(async () => {
    bus = await busClient(natsUrl);
    const durable = unique("cost_reserve");
    replicas = await Promise.all([0, 1].map(() => startCost({ natsUrl, redisUrl, prefix: `${tag}:`, durable })));
    shortLived = await startCost({
      natsUrl,
      redisUrl,
      prefix: `${tag}-short:`,
      durable: unique("cost_reserve_short"),
      env: { COST_RESERVATION_TIMEOUT_MS: "400" },
    });
  });

  afterAll(async () => {
    await Promise.all([...replicas, shortLived].map((r) => r?.stop()));
    await bus?.close();
  });

  it("never overspends under concurrent Reserve calls on two replicas", async () => {
    const [a, b] = replicas as [RunningCost, RunningCost];
    const key = `${tag}-k1`;
    await setBudget(a, {
      scope: Scope.SCOPE_KEY,
      id: key,
      period: Period.PERIOD_DAY,
      limitUsd: 1,
      hard: true,
      thresholds: [],
    });
    const results = await Promise.allSettled(
      Array.from({ length: 60 }, (_, i) => reserve(i % 2 === 0 ? a : b, request(`${tag}-c${i}`, key))),
    );
    const held = results.filter((r) => r.status === "fulfilled");
    const refused = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
    // 11 × $0.09 = $0.99 ≤ $1 < 12 × $0.09.
    expect(held.length).toBe(11);
    for (const r of refused) {
      const err = r.reason as AppError;
      expect(err.code).toBe("RESOURCE_EXHAUSTED");
      expect(err.reason).toBe("insufficient_quota");
    }
    const status = await getBudget(b, { scope: Scope.SCOPE_KEY, id: key, period: Period.PERIOD_DAY });
    expect(status.found).toBe(true);
    expect(status.heldUsd).toBeCloseTo(0.99, 9);
    expect(status.spentUsd).toBe(0);
  });

  it("lists scopes with a hard budget for the gateway, and unlists them when the budget turns soft", async () => {
    const [a, b] = replicas as [RunningCost, RunningCost];
    const key = `${tag}-hard-list`;
    const list = async (r: RunningCost) =>
      (await callUnary(r.client.listHardScopes.bind(r.client), {})).scopes.includes(`key:${key}`);
    const budget = {
      scope: Scope.SCOPE_KEY,
      id: key,
      period: Period.PERIOD_MONTH,
      limitUsd: 5,
      hard: true,
      thresholds: [],
    };
    expect((await setBudget(a, budget)).scopeHard).toBe(true);
    expect(await list(b)).toBe(true);
    // A soft daily budget beside the hard monthly one keeps the scope hard.
    expect((await setBudget(a, { ...budget, period: Period.PERIOD_DAY, hard: false })).scopeHard).toBe(true);
    expect((await setBudget(a, { ...budget, hard: false })).scopeHard).toBe(false);
    expect(await list(b)).toBe(false);
  });

  it("prices a hold at the priciest model the request may end up on", async () => {
    const [a] = replicas as [RunningCost];
    const key = `${tag}-candidates`;
    await setBudget(a, {
      scope: Scope.SCOPE_KEY,
      id: key,
      period: Period.PERIOD_DAY,
      limitUsd: 1,
      hard: true,
      thresholds: [],
    });
    const small = { ...request(`${tag}-cand-1`, key), model: "m-small" };
    // m-small alone: 20,000 × $0.15/M + 2,000 × $0.60/M = $0.0042.
    expect((await reserve(a, small)).heldUsd).toBeCloseTo(0.0042, 9);
    // With m-large as a fallback the hold is m-large's $0.09; unknown candidates are ignored.
    const withFallback = { ...small, requestId: `${tag}-cand-2`, candidateModels: ["m-large", "no-such-model"] };
    expect((await reserve(a, withFallback)).heldUsd).toBeCloseTo(0.09, 9);
  });

  it("settles a reservation to the real cost when its usage arrives, and releases on request", async () => {
    const [a, b] = replicas as [RunningCost, RunningCost];
    const key = `${tag}-k2`;
    await setBudget(a, {
      scope: Scope.SCOPE_KEY,
      id: key,
      period: Period.PERIOD_MONTH,
      limitUsd: 0.2,
      hard: true,
      thresholds: [],
    });
    const r1 = await reserve(a, request(`${tag}-s1`, key));
    const r2 = await reserve(b, request(`${tag}-s2`, key));
    expect(r1).toEqual({ reservationId: `${tag}-s1`, heldUsd: 0.09 });
    // A retried Reserve for the same request holds nothing more.
    expect(await reserve(a, request(`${tag}-s2`, key))).toEqual({ reservationId: `${tag}-s2`, heldUsd: 0.09 });
    await expect(reserve(a, request(`${tag}-s3`, key))).rejects.toMatchObject({ code: "RESOURCE_EXHAUSTED" });

    // The request used 20,000 in + 100 out: $0.0615. Its usage settles the $0.09 hold.
    await bus.publishUsage(
      usage({
        requestId: `${tag}-s1`,
        keyId: key,
        model: "m-large",
        inputTokens: 20_000,
        outputTokens: 100,
        reservationId: r1.reservationId,
      }),
    );
    const settled = await waitFor(
      async () => {
        const s = await getBudget(a, { scope: Scope.SCOPE_KEY, id: key, period: Period.PERIOD_MONTH });
        return s.spentUsd > 0 ? s : undefined;
      },
      { timeoutMs: 30_000, description: "the usage event to settle its hold" },
    );
    expect(settled.spentUsd).toBeCloseTo(0.0615, 9);
    expect(settled.heldUsd).toBeCloseTo(0.09, 9);
    // $0.0615 + $0.09 + $0.09 > $0.2 still.
    await expect(reserve(b, request(`${tag}-s4`, key))).rejects.toMatchObject({ reason: "insufficient_quota" });

    expect(await release(b, r2.reservationId)).toEqual({ released: true });
    expect(await release(a, r2.reservationId)).toEqual({ released: false });
    expect(await reserve(b, request(`${tag}-s5`, key))).toMatchObject({ heldUsd: 0.09 });
  });

  it("releases a reservation whose usage never comes after the timeout", async () => {
    const key = `${tag}-k3`;
    await setBudget(shortLived, {
      scope: Scope.SCOPE_KEY,
      id: key,
      period: Period.PERIOD_DAY,
      limitUsd: 0.1,
      hard: true,
      thresholds: [],
    });
    const heldAt = Date.now();
    await reserve(shortLived, request(`${tag}-t1`, key));
    await expect(reserve(shortLived, request(`${tag}-t2`, key))).rejects.toMatchObject({ code: "RESOURCE_EXHAUSTED" });
    // Retry until the expired hold is released (lazily, by the next Reserve): each refused attempt holds nothing.
    let attempt = 0;
    const third = await waitFor(() => reserve(shortLived, request(`${tag}-t3-${attempt++}`, key)), {
      timeoutMs: 10_000,
      description: "the expired hold to be released",
    });
    expect(third).toMatchObject({ heldUsd: 0.09 });
    // Released by its timeout (400 ms), not before.
    expect(Date.now() - heldAt).toBeGreaterThanOrEqual(400);
    expect(await shortLived.app.ledger.sweep(new Date(Date.now() + 1_000))).toBe(0);
  });

  it("holds nothing for keys without a hard budget", async () => {
    const [a] = replicas as [RunningCost];
    const key = `${tag}-k4`;
    expect(await reserve(a, request(`${tag}-n1`, key))).toEqual({ reservationId: "", heldUsd: 0 });
    await setBudget(a, {
      scope: Scope.SCOPE_KEY,
      id: key,
      period: Period.PERIOD_DAY,
      limitUsd: 0.01,
      hard: false,
      thresholds: [],
    });
    expect(await reserve(a, request(`${tag}-n2`, key))).toEqual({ reservationId: "", heldUsd: 0 });
  });

  it("applies team and user hard budgets to every key of theirs", async () => {
    const [a, b] = replicas as [RunningCost, RunningCost];
    const team = `${tag}-team`;
    await setBudget(a, {
      scope: Scope.SCOPE_TEAM,
      id: team,
      period: Period.PERIOD_MONTH,
      limitUsd: 0.1,
      hard: true,
      thresholds: [],
    });
    expect(await reserve(a, { ...request(`${tag}-u1`, `${tag}-k5`), team })).toMatchObject({ heldUsd: 0.09 });
    await expect(reserve(b, { ...request(`${tag}-u2`, `${tag}-k6`), team })).rejects.toMatchObject({
      code: "RESOURCE_EXHAUSTED",
      message: expect.stringContaining(team),
    });
  });
});
