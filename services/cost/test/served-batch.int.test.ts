import { jetstreamManager } from "@tokenmesh/events";
import { type GetUsageRequest, type GetUsageResponse, Scope } from "@tokenmesh/proto/cost/v1/cost";
import { callUnary } from "@tokenmesh/runtime";
import { waitFor } from "@tokenmesh/testing";
import { describe, expect, it } from "vitest";
import { dayKey } from "../src/domain/periods.js";
import { usage, useCost } from "./harness.js";

describe("the routers' batches of served usage (llm.usage.served.v2)", () => {
  const deliveries = new Map<string, number[]>();
  // The batch's second report "crashes" the first time, after the first one was recorded: the whole batch comes
  // back, and the report recorded before the crash must not count twice.
  const suite = useCost("served", (tag) => (requestId, delivery) => {
    if (!requestId.startsWith(tag)) return;
    deliveries.set(requestId, [...(deliveries.get(requestId) ?? []), delivery.deliveryCount]);
    if (requestId === `${tag}-b` && delivery.deliveryCount === 1) throw new Error("simulated crash before ack");
  });
  const { tag, durable } = suite;

  it("records every report of a batch once per request, at its largest report, across a redelivery and a duplicate", async () => {
    const { bus, cost } = suite;
    const keyId = `${tag}-key`;
    const at = new Date();
    const report = (id: string, output: number, status = "ok") =>
      usage({
        requestId: `${tag}-${id}`,
        timestamp: at.toISOString(),
        keyId,
        inputTokens: 100,
        outputTokens: output,
        status,
      });
    // Request a: the gateway saw its client leave after 4 tokens; the router saw the provider finish 30.
    await bus.publishUsage(report("a", 4, "cancelled"));
    const batch = [report("a", 30), report("b", 7), report("c", 12)];
    await bus.publishServed(batch, "router-test:1");
    // The same reports again under another batch id (a router's retry after a lost ack is dropped by JetStream;
    // this one is stored, as a republished journal record would be).
    await bus.publishServed(batch, "router-test:1-again");

    const jsm = await jetstreamManager(bus.nc);
    await waitFor(
      async () => {
        for (const name of [durable, `${durable}-served-batch`]) {
          const info = await jsm.consumers.info("LLM_USAGE", name);
          if (info.num_pending > 0 || info.num_ack_pending > 0) return false;
        }
        return (deliveries.get(`${tag}-b`)?.length ?? 0) >= 4;
      },
      { timeoutMs: 30_000, description: "both batches recorded and acknowledged" },
    );
    // Each of the two batches crashed on b's first delivery and came back whole: b, and a and c recorded before
    // and after it, were handled twice per batch.
    expect(deliveries.get(`${tag}-b`)?.sort()).toEqual([1, 1, 2, 2]);
    expect(deliveries.get(`${tag}-c`)?.sort()).toEqual([1, 1, 2, 2]);

    const res = await callUnary<GetUsageRequest, GetUsageResponse>(cost.client.getUsage.bind(cost.client), {
      scope: Scope.SCOPE_KEY,
      id: keyId,
      period: 0,
      startDay: dayKey(at),
      endDay: dayKey(at),
    });
    expect(res.totals).toMatchObject({ requests: 3, inputTokens: 300, outputTokens: 30 + 7 + 12 });
  });
});
