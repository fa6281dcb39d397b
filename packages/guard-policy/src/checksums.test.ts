import { describe, expect, it } from "vitest";
import { ibanValid, luhnValid } from "./checksums.js";

describe("luhnValid", () => {
  it("accepts valid card numbers with or without separators", () => {
    for (const n of [
      "4111111111111111",
      "4242 4242 4242 4242",
      "5555-5555-5555-4444",
      "378282246310005",
      "79927398713",
    ]) {
      expect(luhnValid(n), n).toBe(true);
    }
  });
  it("rejects a number with one digit changed", () => {
    expect(luhnValid("4111111111111112")).toBe(false);
    expect(luhnValid("4242424242424241")).toBe(false);
  });
  it("needs at least two digits", () => {
    expect(luhnValid("0")).toBe(false);
    expect(luhnValid("")).toBe(false);
  });
});

describe("ibanValid", () => {
  it("accepts valid IBANs, spaced or not", () => {
    for (const n of ["DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432", "FR1420041010050500013M02606"]) {
      expect(ibanValid(n), n).toBe(true);
    }
  });
  it("rejects a wrong check digit and malformed input", () => {
    expect(ibanValid("DE88 3704 0044 0532 0130 00")).toBe(false);
    expect(ibanValid("DE89 3704")).toBe(false);
    expect(ibanValid("1234567890123456")).toBe(false);
  });
});
