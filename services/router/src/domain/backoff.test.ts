import { describe, expect, it } from "vitest";
import { backoffDelay } from "./backoff.js";

const policy = { baseDelayMs: 100, maxDelayMs: 2000 };

describe("backoffDelay", () => {
  it("draws within [0, base·2^(n-1)] and never above the cap", () => {
    const ceilings = [100, 200, 400, 800, 1600, 2000, 2000];
    ceilings.forEach((ceiling, i) => {
      expect(backoffDelay(i + 1, policy, undefined, () => 0)).toBe(0);
      expect(backoffDelay(i + 1, policy, undefined, () => 0.999999)).toBe(ceiling - 1);
      for (let k = 0; k < 50; k++) {
        const d = backoffDelay(i + 1, policy);
        expect(d).toBeGreaterThanOrEqual(0);
        expect(d).toBeLessThan(ceiling);
      }
    });
  });

  it("stays finite for huge attempt numbers", () => {
    expect(backoffDelay(10_000, policy, undefined, () => 0.5)).toBe(1000);
  });

  it("uses retryAfterMs as a floor", () => {
    expect(backoffDelay(1, policy, 750, () => 0.1)).toBe(750);
    expect(backoffDelay(5, policy, 10, () => 0.5)).toBe(800);
    expect(backoffDelay(1, policy, 5000, () => 0.5)).toBe(5000);
  });
});
