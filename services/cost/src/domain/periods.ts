/** What a budget or a usage total is counted over: one UTC day or one UTC month. */
export type Period = "day" | "month";

/** Who a budget applies to. */
export type BudgetScope = "key" | "team" | "user";

/** What usage can be queried by: a budget scope, or the model that served the requests. */
export type UsageScope = BudgetScope | "model";

export const BUDGET_SCOPES: readonly BudgetScope[] = ["key", "team", "user"];
export const PERIODS: readonly Period[] = ["day", "month"];

const DAY_RE = /^(\d{4})-(\d{2})-(\d{2})$/;
const DAY_MS = 86_400_000;

/** The UTC day of `date` as YYYY-MM-DD. */
export function dayKey(date: Date): string {
  return date.toISOString().slice(0, 10);
}

/** The UTC month of `date` as YYYY-MM. */
export function monthKey(date: Date): string {
  return date.toISOString().slice(0, 7);
}

/** The key of the period containing `date`: YYYY-MM-DD for a day, YYYY-MM for a month (UTC). */
export function periodKey(period: Period, date: Date): string {
  return period === "day" ? dayKey(date) : monthKey(date);
}

/** Parses a YYYY-MM-DD day as UTC midnight; undefined when it is not a real calendar day. */
export function parseDay(day: string): Date | undefined {
  const m = DAY_RE.exec(day);
  if (!m) return undefined;
  const date = new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])));
  return dayKey(date) === day ? date : undefined;
}

/** Every UTC day from `start` to `end`, inclusive, as YYYY-MM-DD (empty when end is before start). */
export function daysBetween(start: Date, end: Date): string[] {
  const days: string[] = [];
  const from = Date.UTC(start.getUTCFullYear(), start.getUTCMonth(), start.getUTCDate());
  const to = Date.UTC(end.getUTCFullYear(), end.getUTCMonth(), end.getUTCDate());
  for (let t = from; t <= to; t += DAY_MS) days.push(dayKey(new Date(t)));
  return days;
}

/** The days of the month containing `date`, from the 1st up to and including `date`'s day. */
export function monthToDate(date: Date): string[] {
  return daysBetween(new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), 1)), date);
}
