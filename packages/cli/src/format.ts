import type { UsageRecorded } from "@tokenmesh/proto/events/v1/events";
import type { AuditList, Budget, BudgetStatus, KeyView, UsageReport, UsageTotals } from "./admin.client.js";
import type { Period } from "./args.js";

/** A table column: its header and which side its cells line up on. */
export interface Column {
  header: string;
  align?: "left" | "right";
}

/**
 * Lays out `rows` under `columns` with two spaces between columns, each as wide as its widest cell, numbers
 * right-aligned where the column says so. `footer` rows (a total) follow a dashed rule. Lines carry no trailing
 * spaces; the result ends with a newline.
 */
export function formatTable(
  columns: readonly Column[],
  rows: readonly (readonly string[])[],
  footer: readonly (readonly string[])[] = [],
): string {
  const all = [columns.map((c) => c.header), ...rows, ...footer];
  const widths = columns.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    columns
      .map((c, i) => {
        const cell = cells[i] ?? "";
        return c.align === "right" ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!);
      })
      .join("  ")
      .trimEnd();
  const out = [line(all[0]!), ...rows.map(line)];
  if (footer.length > 0) out.push(widths.map((w) => "-".repeat(w)).join("  "), ...footer.map(line));
  return out.join("\n") + "\n";
}

/** Dollars: cents for amounts of a cent or more, up to six decimals below (token prices are tiny). */
export function formatUsd(n: number): string {
  if (n === 0) return "$0.00";
  if (Math.abs(n) >= 0.01) {
    return `${n < 0 ? "-" : ""}$${Math.abs(n).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
  }
  const digits = Math.abs(n).toFixed(6).replace(/0+$/, "");
  return digits === "0." ? `${n < 0 ? "-" : ""}<$0.000001` : `${n < 0 ? "-" : ""}$${digits}`;
}

/** A count with thousands separators (`12,345`). */
export function formatCount(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

/** Whole milliseconds (`1234ms`), or `-` when unknown (0: no first token, or not measured). */
export function formatMs(n: number): string {
  return n > 0 ? `${Math.round(n)}ms` : "-";
}

function dash(s: string): string {
  return s === "" ? "-" : s;
}

/** The time part of an ISO timestamp in UTC (`12:34:56.789`), or a placeholder when it is missing or invalid. */
export function formatTime(iso: string | undefined): string {
  const t = iso === undefined || iso === "" ? Number.NaN : Date.parse(iso);
  return Number.isNaN(t) ? "--:--:--.---" : new Date(t).toISOString().slice(11, 23);
}

/**
 * One line for one finished request, as `usage tail` prints it:
 * `12:34:56.789 req_1 key=k_1 team=research tiny→local-tiny ok in=10 out=5 cached=0 latency=120ms ttft=30ms`,
 * with `user=` when there is a user, `status:error_code` when not ok and `cache-hit` for cache hits.
 */
export function formatUsageLine(u: UsageRecorded): string {
  const status = u.status === "ok" || u.errorCode === "" ? dash(u.status) : `${dash(u.status)}:${u.errorCode}`;
  return [
    formatTime(u.timestamp),
    dash(u.requestId),
    `key=${dash(u.keyId)}`,
    `team=${dash(u.team)}`,
    ...(u.user === "" ? [] : [`user=${u.user}`]),
    `${dash(u.modelRequested)}→${dash(u.model)}`,
    status,
    `in=${u.inputTokens}`,
    `out=${u.outputTokens}`,
    `cached=${u.cachedTokens}`,
    `latency=${formatMs(u.latencyMs)}`,
    `ttft=${formatMs(u.ttftMs)}`,
    ...(u.cacheHit ? ["cache-hit"] : []),
  ].join(" ");
}

/** The key list as a table; unlimited rates and "all models" read as `-` and `all`. */
export function formatKeys(keys: readonly KeyView[]): string {
  if (keys.length === 0) return "No keys.\n";
  return formatTable(
    [
      { header: "ID" },
      { header: "NAME" },
      { header: "TEAM" },
      { header: "USER" },
      { header: "MODELS" },
      { header: "RPM", align: "right" },
      { header: "TPM", align: "right" },
      { header: "CREATED (UTC)" },
    ],
    keys.map((k) => [
      k.id,
      k.name,
      dash(k.team),
      dash(k.user),
      k.models.length === 0 ? "all" : k.models.join(","),
      k.rpm > 0 ? formatCount(k.rpm) : "-",
      k.tpm > 0 ? formatCount(k.tpm) : "-",
      formatCreated(k.created_at),
    ]),
  );
}

function formatCreated(iso: string): string {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? dash(iso) : new Date(t).toISOString().slice(0, 16).replace("T", " ");
}

function totalsRow(label: string, t: UsageTotals): string[] {
  return [
    label,
    formatCount(t.requests),
    formatCount(t.errors),
    formatCount(t.inputTokens),
    formatCount(t.outputTokens),
    formatCount(t.cachedTokens),
    formatUsd(t.costUsd),
  ];
}

/** What a usage report covers, in words: `this month (UTC)`, `today (UTC)` or a day range. */
export function describeRange(period: Period, start?: string, end?: string): string {
  if (start !== undefined || end !== undefined) return `from ${start ?? end} to ${end ?? "today"} (UTC)`;
  return period === "day" ? "today (UTC)" : "this month (UTC)";
}

/** A usage report: one row per model, most expensive first (then most requests), and a total row. */
export function formatUsageReport(title: string, report: UsageReport): string {
  const models = Object.entries(report.byModel).sort(
    ([a, x], [b, y]) => y.costUsd - x.costUsd || y.requests - x.requests || a.localeCompare(b),
  );
  if (models.length === 0 && report.requests === 0) return `${title}\n\nNo usage recorded.\n`;
  const table = formatTable(
    [
      { header: "MODEL" },
      { header: "REQUESTS", align: "right" },
      { header: "ERRORS", align: "right" },
      { header: "INPUT TOKENS", align: "right" },
      { header: "OUTPUT TOKENS", align: "right" },
      { header: "CACHED TOKENS", align: "right" },
      { header: "COST", align: "right" },
    ],
    models.map(([model, t]) => totalsRow(model, t)),
    [totalsRow("TOTAL", report)],
  );
  return `${title}\n\n${table}`;
}

function describeBudget(b: Budget): string {
  const alerts =
    b.thresholds.length === 0 ? "" : `, alerts at ${b.thresholds.map((t) => `${Math.round(t * 100)}%`).join(", ")}`;
  const kind = b.hard ? "hard: requests that would exceed it are refused" : "soft: alerts only";
  return `${b.scope} ${b.id}, per ${b.period}: ${formatUsd(b.limitUsd)} (${kind})${alerts}`;
}

/** The answer to `budgets set`. */
export function formatBudgetSet(b: Budget): string {
  return `Budget set for ${describeBudget(b)}\n`;
}

/** The answer to `budgets get`: the budget (or that there is none) and this period's spending. */
export function formatBudgetStatus(scope: string, id: string, period: Period, s: BudgetStatus): string {
  const when = period === "day" ? "today" : "this month";
  const held = s.heldUsd > 0 ? ` (plus ${formatUsd(s.heldUsd)} held for requests in flight)` : "";
  if (s.budget === null)
    return `No ${period} budget for ${scope} ${id}.\nSpent ${when}: ${formatUsd(s.spentUsd)}${held}\n`;
  const b = s.budget;
  const used = b.limitUsd > 0 ? `, ${Math.round((s.spentUsd / b.limitUsd) * 100)}% used` : "";
  const left = Math.max(0, b.limitUsd - s.spentUsd - s.heldUsd);
  return (
    `Budget for ${describeBudget(b)}\n` +
    `Spent ${when}: ${formatUsd(s.spentUsd)}${held}; ${formatUsd(left)} left${used}\n`
  );
}

/** Audited admin changes as a table, newest first, with a note when older ones were left out. */
export function formatAudit(list: AuditList): string {
  if (list.data.length === 0) return "No admin changes.\n";
  const rows = list.data.map((e) => [
    e.time,
    `${e.actor.id} (${e.actor.role}${e.actor.team ? `, team ${e.actor.team}` : ""})`,
    e.action,
    `${e.target.type} ${e.target.id}`,
    Object.entries(e.summary)
      .map(([k, v]) => `${k}=${v}`)
      .join(" "),
  ]);
  const table = formatTable(
    [{ header: "TIME" }, { header: "ACTOR" }, { header: "ACTION" }, { header: "TARGET" }, { header: "DETAILS" }],
    rows,
  );
  return list.truncated ? `${table}(older changes not shown: use --since or --limit)\n` : table;
}
