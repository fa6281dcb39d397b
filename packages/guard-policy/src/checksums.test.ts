import { describe, expect, it } from "vitest";
import { cnResidentIdValid, ibanValid, luhnValid } from "./checksums.js";

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

describe("cnResidentIdValid", () => {
  it("accepts numbers whose MOD 11-2 check character matches, X in either case, spaced 6-8-4 or not", () => {
    for (const n of ["11010519491231002X", "11010519491231002x", "44030419900307123X", "510107198511208812"]) {
      expect(cnResidentIdValid(n), n).toBe(true);
    }
    expect(cnResidentIdValid("110105 19491231 002X")).toBe(true);
  });
  it("rejects a wrong check character", () => {
    expect(cnResidentIdValid("110105194912310021")).toBe(false);
    expect(cnResidentIdValid("440304199003071230")).toBe(false);
  });
  it("rejects an unknown province and impossible birth dates even with a matching check character", () => {
    // Each body below gets its correct check character, so only the field under test is wrong.
    const withCheck = (body: string) => {
      const w = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
      let sum = 0;
      for (let i = 0; i < 17; i++) sum += Number(body[i]) * w[i]!;
      const c = (12 - (sum % 11)) % 11;
      return body + (c === 10 ? "X" : String(c));
    };
    expect(cnResidentIdValid(withCheck("11010519900307123"))).toBe(true);
    expect(cnResidentIdValid(withCheck("99010519900307123"))).toBe(false); // province 99
    expect(cnResidentIdValid(withCheck("11010519900230123"))).toBe(false); // 30 February
    expect(cnResidentIdValid(withCheck("11010519000229123"))).toBe(false); // 1900 was not a leap year
    expect(cnResidentIdValid(withCheck("11010520000229123"))).toBe(true); // 2000 was
    expect(cnResidentIdValid(withCheck("11010518991231123"))).toBe(false); // before 1900
  });
});
