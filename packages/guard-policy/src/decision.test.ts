import { describe, expect, it } from "vitest";
import { decisionMessageId } from "./decision.js";

describe("decisionMessageId", () => {
  it("keeps the deterministic tier's ids and separates deep decisions per stage and choice", () => {
    expect(decisionMessageId({ requestId: "r1", stage: "input", tier: "deterministic" })).toBe("r1:input");
    expect(decisionMessageId({ requestId: "r1", stage: "input", tier: "deep" })).toBe("r1:input:deep");
    expect(decisionMessageId({ requestId: "r1", stage: "output", tier: "deep", index: 2 })).toBe("r1:output:deep:2");
  });
});
