import { describe, expect, it } from "vitest";
import { effectivePriority, parsePriority, priorityFromEnum, priorityFromNumber, priorityNumber } from "./priority.js";

describe("priority classes", () => {
  it("maps classes to RequestContext.priority numbers (0 standard, higher first) and the public enum", () => {
    expect([priorityNumber("batch"), priorityNumber("standard"), priorityNumber("interactive")]).toEqual([-1, 0, 1]);
    expect([-5, -1, 0, 1, 2].map(priorityFromNumber)).toEqual([
      "batch",
      "batch",
      "standard",
      "interactive",
      "interactive",
    ]);
    expect([0, 1, 2, 3, 4].map(priorityFromEnum)).toEqual([undefined, "batch", "standard", "interactive", undefined]);
  });

  it("parses the header case-insensitively and refuses unknown classes", () => {
    expect(parsePriority(undefined)).toBeUndefined();
    expect(parsePriority("")).toBeUndefined();
    expect(parsePriority(" Batch ")).toBe("batch");
    expect(() => parsePriority("urgent")).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
  });

  it("takes the stated class, else the key's default, else the mode's, capped at the key's maximum", () => {
    expect(effectivePriority(undefined, {}, "interactive")).toBe("interactive");
    expect(effectivePriority(undefined, {}, "batch")).toBe("batch");
    expect(effectivePriority(undefined, { priority: "standard" }, "interactive")).toBe("standard");
    expect(effectivePriority("batch", { priority: "standard" }, "interactive")).toBe("batch");
    expect(effectivePriority("interactive", { maxPriority: "standard" }, "interactive")).toBe("standard");
    expect(effectivePriority(undefined, { maxPriority: "batch" }, "interactive")).toBe("batch");
    expect(effectivePriority("batch", { maxPriority: "standard" }, "interactive")).toBe("batch");
  });
});
