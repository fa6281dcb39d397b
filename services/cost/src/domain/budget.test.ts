import { describe, expect, it } from "vitest";
import { type Budget, decodeBudget, encodeBudget, normalizeBudget } from "./budget.js";

const base: Budget = { scope: "key", id: "k1", period: "day", limitUsd: 10, hard: true, thresholds: [] };

describe("normalizeBudget", () => {
  it("defaults thresholds to 50, 80 and 100 %", () => {
    expect(normalizeBudget(base).thresholds).toEqual([0.5, 0.8, 1]);
  });

  it("sorts and deduplicates thresholds", () => {
    expect(normalizeBudget({ ...base, thresholds: [1, 0.25, 1, 0.9] }).thresholds).toEqual([0.25, 0.9, 1]);
  });

  it("refuses bad limits, thresholds and ids", () => {
    expect(() => normalizeBudget({ ...base, limitUsd: -1 })).toThrow(/limit_usd/);
    expect(() => normalizeBudget({ ...base, thresholds: [0] })).toThrow(/thresholds/);
    expect(() => normalizeBudget({ ...base, id: "" })).toThrow(/id/);
  });
});

describe("encodeBudget", () => {
  it("stores integer threshold amounts and round-trips", () => {
    const b = normalizeBudget({ ...base, limitUsd: 0.3, thresholds: [0.1, 0.8] });
    const rec = encodeBudget(b);
    expect(rec).toBe("300000000|1|0.1:30000000,0.8:240000000");
    expect(decodeBudget("key", "k1", "day", rec)).toEqual(b);
  });
});
