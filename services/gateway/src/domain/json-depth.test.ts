import { describe, expect, it } from "vitest";
import { nestedDeeperThan } from "./json-depth.js";

function nested(depth: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = i % 2 === 0 ? [v] : { a: v };
  return v;
}

describe("nestedDeeperThan", () => {
  it("counts objects and arrays, not scalars", () => {
    expect(nestedDeeperThan("x", 0)).toBe(false);
    expect(nestedDeeperThan({}, 0)).toBe(true);
    expect(nestedDeeperThan({ type: "object", properties: { a: { type: "string" } } }, 3)).toBe(false);
    expect(nestedDeeperThan({ type: "object", properties: { a: { type: "string" } } }, 2)).toBe(true);
  });

  it("finds the one deep branch among shallow ones", () => {
    expect(nestedDeeperThan({ a: 1, b: [1, 2], c: nested(10) }, 10)).toBe(true);
    expect(nestedDeeperThan({ a: 1, b: [1, 2], c: nested(9) }, 10)).toBe(false);
  });

  it("does not overflow the stack on nesting that JSON.stringify cannot write", () => {
    const deep = nested(200_000);
    expect(() => JSON.stringify(deep)).toThrow(RangeError);
    expect(nestedDeeperThan(deep, 64)).toBe(true);
  });
});
