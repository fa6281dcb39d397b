import { describe, expect, it } from "vitest";
import { dayKey, daysBetween, monthKey, monthToDate, parseDay, periodKey } from "./periods.js";

describe("periods", () => {
  it("keys days and months in UTC", () => {
    const d = new Date("2025-03-31T23:30:00-02:00");
    expect(dayKey(d)).toBe("2025-04-01");
    expect(monthKey(d)).toBe("2025-04");
    expect(periodKey("day", d)).toBe("2025-04-01");
    expect(periodKey("month", d)).toBe("2025-04");
  });

  it("parses only real calendar days", () => {
    expect(parseDay("2024-02-29")?.toISOString()).toBe("2024-02-29T00:00:00.000Z");
    expect(parseDay("2025-02-29")).toBeUndefined();
    expect(parseDay("2025-1-01")).toBeUndefined();
  });

  it("lists days inclusively across a month boundary", () => {
    expect(daysBetween(parseDay("2025-01-30")!, parseDay("2025-02-02")!)).toEqual([
      "2025-01-30",
      "2025-01-31",
      "2025-02-01",
      "2025-02-02",
    ]);
    expect(daysBetween(parseDay("2025-01-02")!, parseDay("2025-01-01")!)).toEqual([]);
  });

  it("lists the month to date", () => {
    expect(monthToDate(new Date("2025-02-03T12:00:00Z"))).toEqual(["2025-02-01", "2025-02-02", "2025-02-03"]);
  });
});
