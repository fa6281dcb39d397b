import type { UsageRecorded } from "@tokenmesh/proto/events/v1/events";
import { describe, expect, it } from "vitest";
import { matchesFilter } from "./usage-tail.js";

const event = { keyId: "k_1", team: "research", modelRequested: "tiny", model: "local-tiny" } as UsageRecorded;

describe("matchesFilter", () => {
  it("passes everything without filters", () => {
    expect(matchesFilter(event, {})).toBe(true);
  });

  it("requires every given filter to match", () => {
    expect(matchesFilter(event, { key: "k_1", team: "research" })).toBe(true);
    expect(matchesFilter(event, { key: "k_1", team: "other" })).toBe(false);
    expect(matchesFilter(event, { key: "k_2" })).toBe(false);
  });

  it("matches the model by the requested name or the one that served", () => {
    expect(matchesFilter(event, { model: "tiny" })).toBe(true);
    expect(matchesFilter(event, { model: "local-tiny" })).toBe(true);
    expect(matchesFilter(event, { model: "gpt-4o-mini" })).toBe(false);
  });
});
