import { describe, expect, it } from "vitest";
import { correlationId, mintRequestId } from "./request-id.js";

describe("mintRequestId", () => {
  it("mints a fresh id every time", () => {
    const ids = new Set(Array.from({ length: 1000 }, mintRequestId));
    expect(ids.size).toBe(1000);
    for (const id of ids) expect(id).toMatch(/^req_[0-9a-f]{24}$/);
  });
});

describe("correlationId", () => {
  it("keeps printable ASCII up to 128 characters and drops anything else", () => {
    expect(correlationId("abc-123_x.y:z/1")).toBe("abc-123_x.y:z/1");
    expect(correlationId(["first", "second"])).toBe("first");
    expect(correlationId("a".repeat(128))).toHaveLength(128);
    for (const bad of ["", "a".repeat(129), "has space", "new\nline", "ünï", "\u0000", undefined, 42, {}]) {
      expect(correlationId(bad)).toBeUndefined();
    }
  });
});
