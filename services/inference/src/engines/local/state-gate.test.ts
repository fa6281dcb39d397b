import { describe, expect, it } from "vitest";
import { StateGate } from "./state-gate.js";

describe("StateGate", () => {
  it("is open when no change is pending", () => {
    expect(new StateGate().wait).toBeUndefined();
  });

  it("holds streams until every overlapping change is done, and passes a change's result and error through", async () => {
    const gate = new StateGate();
    let finishA!: (v: string) => void;
    let failB!: (e: Error) => void;
    const a = gate.change(() => new Promise<string>((resolve) => (finishA = resolve)));
    const b = gate.change(() => new Promise<never>((_, reject) => (failB = reject)));
    const held = gate.wait;
    expect(held).toBeDefined();
    let passed = false;
    void held?.then(() => (passed = true));
    finishA("a");
    await expect(a).resolves.toBe("a");
    await Promise.resolve();
    expect(passed).toBe(false);
    expect(gate.wait).toBe(held);
    failB(new Error("b failed"));
    await expect(b).rejects.toThrow("b failed");
    await held;
    expect(passed).toBe(true);
    expect(gate.wait).toBeUndefined();
  });
});
