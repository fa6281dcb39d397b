import { jetstreamManager } from "@tokenmesh/events";
import { type GetUsageRequest, type GetUsageResponse, Scope } from "@tokenmesh/proto/cost/v1/cost";
import type { UsageRecorded } from "@tokenmesh/proto/events/v1/events";
import { callUnary } from "@tokenmesh/runtime";
import { waitFor } from "@tokenmesh/testing";
import { describe, expect, it } from "vitest";
import { dayKey } from "../src/domain/periods.js";
import { costNano } from "../src/domain/pricing.js";
import { prices, usage, useCost } from "./harness.js";

const EVENTS = 10_000;

/** A deterministic pseudo-random sequence, so a failure can be replayed. */
function lcg(seed: number) {
  let s = seed;
  return (n: number) => {
    s = (s * 1664525 + 1013904223) % 4294967296;
    return s % n;
  };
}

interface Expected {
  nano: number;
  requests: number;
  input: number;
  output: number;
  cached: number;
  errors: number;
}
const zero = (): Expected => ({ nano: 0, requests: 0, input: 0, output: 0, cached: 0, errors: 0 });

describe("usage ledger", () => {
  const deliveries = new Map<string, number>();
  // Every 97th request "crashes" after its ledger script ran and before its ack: it must be redelivered and not
  // counted again.
  const suite = useCost("ledger", (tag) => (requestId, delivery) => {
    if (!requestId.startsWith(tag)) return;
    deliveries.set(requestId, (deliveries.get(requestId) ?? 0) + 1);
    if (Number(requestId.split("-r")[1]) % 97 === 0 && delivery.deliveryCount === 1) {
      throw new Error("simulated crash before ack");
    }
  });
  const { tag, durable } = suite;

  it("counts 10,000 events exactly once despite 10 % duplicates and forced redeliveries", {
    timeout: 180_000,
  }, async () => {
    const { bus, cost } = suite;
    const rand = lcg(42);
    const at = new Date();
    const day = dayKey(at);
    const byTeam = new Map<string, Expected>();
    const byModel = new Map<string, Expected>();
    const byKey = new Map<string, Expected>();
    const events: UsageRecorded[] = [];
    for (let i = 0; i < EVENTS; i++) {
      const model = rand(3) === 0 ? "m-large" : "m-small";
      const input = 1 + rand(5000);
      const cached = model === "m-small" && rand(2) === 0 ? rand(input) : 0;
      const output = rand(2000);
      const status = i % 37 === 0 ? "error" : "ok";
      const ev = usage({
        requestId: `${tag}-r${i}`,
        timestamp: at.toISOString(),
        keyId: `${tag}-k${rand(5)}`,
        team: `${tag}-t${rand(3)}`,
        user: `${tag}-u${rand(10)}`,
        model,
        inputTokens: input,
        outputTokens: output,
        cachedTokens: cached,
        status,
      });
      events.push(ev);
      const nano = costNano(prices.lookup(model)!.price, { input, output, cached });
      for (const [map, id] of [
        [byTeam, ev.team],
        [byModel, model],
        [byKey, ev.keyId],
      ] as const) {
        const e = map.get(id) ?? zero();
        e.nano += nano;
        e.requests += 1;
        e.input += input;
        e.output += output;
        e.cached += cached;
        e.errors += status === "ok" ? 0 : 1;
        map.set(id, e);
      }
    }
    // 10 % duplicates under another Nats-Msg-Id (so the stream stores them too), interleaved with the originals.
    const publishes: [UsageRecorded, string][] = [];
    events.forEach((ev, i) => {
      publishes.push([ev, ev.requestId]);
      if (i % 10 === 5) publishes.push([events[i - 5]!, `${events[i - 5]!.requestId}:dup`]);
    });
    expect(publishes.length).toBe(11_000);
    for (let i = 0; i < publishes.length; i += 500) {
      await Promise.all(publishes.slice(i, i + 500).map(([ev, id]) => bus.publishUsage(ev, id)));
    }

    const jsm = await jetstreamManager(bus.nc);
    await waitFor(
      async () => {
        const info = await jsm.consumers.info("LLM_USAGE", durable);
        return info.num_pending === 0 && info.num_ack_pending === 0 && deliveries.size === EVENTS;
      },
      { timeoutMs: 120_000, description: "every usage event to be recorded and acknowledged" },
    );

    const get = (scope: Scope, id: string) =>
      callUnary<GetUsageRequest, GetUsageResponse>(cost.client.getUsage.bind(cost.client), {
        scope,
        id,
        period: 0,
        startDay: day,
        endDay: day,
      });

    let requests = 0;
    for (const [team, e] of byTeam) {
      const r = await get(Scope.SCOPE_TEAM, team);
      requests += r.totals!.requests;
      expect(r.totals).toEqual({
        costUsd: e.nano / 1e9,
        requests: e.requests,
        inputTokens: e.input,
        outputTokens: e.output,
        cachedTokens: e.cached,
        errors: e.errors,
      });
      expect(Math.round(r.totals!.costUsd * 100)).toBe(Math.round(e.nano / 1e7));
    }
    expect(requests).toBe(EVENTS);
    for (const [key, e] of byKey) {
      const r = await get(Scope.SCOPE_KEY, key);
      expect(r.totals!.requests).toBe(e.requests);
      expect(r.totals!.costUsd).toBe(e.nano / 1e9);
    }
    // The model scope holds every test's events on the shared server; the per-key breakdown holds only ours.
    const sumByModel = new Map<string, number>();
    for (const key of byKey.keys()) {
      const r = await get(Scope.SCOPE_KEY, key);
      for (const [m, t] of Object.entries(r.byModel)) sumByModel.set(m, (sumByModel.get(m) ?? 0) + t.requests);
    }
    for (const [model, e] of byModel) expect(sumByModel.get(model)).toBe(e.requests);

    const redelivered = [...deliveries.entries()].filter(([, n]) => n > 1).map(([rid]) => rid);
    expect(redelivered.length).toBeGreaterThanOrEqual(Math.floor(EVENTS / 97));
  });
});
