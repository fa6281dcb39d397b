import type { UsageRecorded } from "@tokenmesh/proto/events/v1/events";
import { AppError } from "@tokenmesh/runtime";
import { createLogger } from "@tokenmesh/telemetry";
import { describe, expect, it } from "vitest";
import { Admission } from "./admission.js";
import { UsageDraft, UsageRecorder } from "./usage-recorder.js";

function recorder() {
  const events: UsageRecorded[] = [];
  const admission = new Admission({
    limiter: {
      acquire: async () => ({ allowed: true, limitedBy: "", remainingRequests: -1, remainingTokens: -1, resetMs: 0 }),
      settle: async () => undefined,
    },
    budgets: { blocked: () => false, hasHard: async () => true },
    cost: { reserve: async () => "", release: async () => undefined },
    logger: createLogger({ service: "test", level: "silent" }),
  });
  return { events, recorder: new UsageRecorder({ record: (e) => void events.push(e) }, admission) };
}

const draft = () =>
  new UsageDraft(
    { requestId: "req_1", modelRequested: "m", user: "", endpoint: "chat", signal: new AbortController().signal },
    false,
  );

describe("UsageRecorder", () => {
  it("names the request's possible hold when admission failed, so the ledger settles a hold whose answer was lost", () => {
    const { events, recorder: r } = recorder();
    // cost took the hold, then died before answering Reserve: the gateway saw UNAVAILABLE.
    r.finish(draft(), new AppError("UNAVAILABLE", "cost unreachable"));
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ requestId: "req_1", status: "error", reservationId: "req_1" });
  });

  it("names the hold admission took, and none when admission took none", () => {
    const { events, recorder: r } = recorder();
    const held = draft();
    held.admitted = { rate: undefined, reservationId: "req_1", heldTokens: undefined, priority: "interactive" };
    r.finish(held);
    const free = draft();
    free.admitted = { rate: undefined, reservationId: "", heldTokens: undefined, priority: "interactive" };
    r.finish(free);
    expect(events.map((e) => e.reservationId)).toEqual(["req_1", ""]);
  });
});
