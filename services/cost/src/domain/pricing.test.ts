import { describe, expect, it } from "vitest";
import { costNano, nanoToUsd, usdToNano, worstCaseNano } from "./pricing.js";

const mini = { inputPerMtok: 0.15, outputPerMtok: 0.6, cachedInputPerMtok: 0.075 };

describe("costNano", () => {
  it("prices uncached input, cached input and output separately", () => {
    // 800 uncached × 0.15 + 200 cached × 0.075 + 500 × 0.6 = 120 + 15 + 300 µUSD
    expect(costNano(mini, { input: 1000, cached: 200, output: 500 })).toBe(435_000);
  });

  it("charges cached tokens at the input price when the model has no cached price", () => {
    expect(costNano({ inputPerMtok: 1, outputPerMtok: 2 }, { input: 10, cached: 10, output: 0 })).toBe(10_000);
  });

  it("rounds once to the nano-USD", () => {
    expect(costNano({ inputPerMtok: 0.0000015, outputPerMtok: 0 }, { input: 1, cached: 0, output: 0 })).toBe(0);
    expect(costNano({ inputPerMtok: 0.0007, outputPerMtok: 0 }, { input: 1, cached: 0, output: 0 })).toBe(1);
  });

  it("clamps inconsistent counts instead of refunding", () => {
    expect(costNano(mini, { input: -5, cached: 50, output: -1 })).toBe(0);
    expect(costNano(mini, { input: 10, cached: 50, output: 0 })).toBe(750);
  });
});

describe("worstCaseNano", () => {
  it("holds all input at the input price plus max output", () => {
    expect(worstCaseNano(mini, 1000, 1000)).toBe(750_000);
  });
});

describe("usd conversions", () => {
  it("round-trips to the nano-USD", () => {
    expect(usdToNano(12.345678901)).toBe(12_345_678_901);
    expect(nanoToUsd(1_500_000_000)).toBe(1.5);
  });
});
