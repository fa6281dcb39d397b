import { describe, expect, it } from "vitest";
import { sumUsage, toLedgerEntry, type UsageFacts } from "./usage.js";

const facts: UsageFacts = {
  requestId: "r1",
  timestamp: "2025-05-31T23:59:59.900Z",
  keyId: "k",
  team: "t",
  user: "u",
  modelRequested: "mini",
  model: "gpt-4o-mini",
  inputTokens: 1000,
  outputTokens: 500,
  cachedTokens: 200,
  cacheHit: false,
  status: "ok",
  reservationId: "",
};
const price = { inputPerMtok: 0.15, outputPerMtok: 0.6, cachedInputPerMtok: 0.075 };
const now = new Date("2025-06-02T10:00:00Z");

describe("toLedgerEntry", () => {
  it("prices the event and keys it by the event's own UTC day and month", () => {
    const e = toLedgerEntry(facts, price, "seq:1", now);
    expect(e).toMatchObject({ requestId: "r1", day: "2025-05-31", month: "2025-05", costNano: 435_000, error: false });
  });

  it("records cache hits and unknown models at cost 0", () => {
    expect(toLedgerEntry({ ...facts, cacheHit: true }, price, "x", now).costNano).toBe(0);
    expect(toLedgerEntry(facts, undefined, "x", now).costNano).toBe(0);
  });

  it("falls back to the delivery id, processing time and requested model", () => {
    const e = toLedgerEntry(
      { ...facts, requestId: "", timestamp: undefined, model: "", status: "error" },
      price,
      "seq:9",
      now,
    );
    expect(e).toMatchObject({ requestId: "seq:9", day: "2025-06-02", model: "mini", error: true });
  });
});

describe("sumUsage", () => {
  it("sums days per model and overall", () => {
    const r = sumUsage([
      { "a|c": "1500000000", "a|r": "2", "a|i": "10", "b|c": "1", "b|r": "1", "b|e": "1" },
      { "a|c": "500000000", "a|r": "1", "a|o": "7", "a|k": "3" },
    ]);
    expect(r.byModel.a).toEqual({
      costUsd: 2,
      requests: 3,
      inputTokens: 10,
      outputTokens: 7,
      cachedTokens: 3,
      errors: 0,
    });
    expect(r.totals).toEqual({
      costUsd: 2.000000001,
      requests: 4,
      inputTokens: 10,
      outputTokens: 7,
      cachedTokens: 3,
      errors: 1,
    });
  });
});
