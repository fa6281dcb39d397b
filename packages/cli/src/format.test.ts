import { UsageRecorded } from "@tokenmesh/proto/events/v1/events";
import { describe, expect, it } from "vitest";
import {
  describeRange,
  formatAudit,
  formatBudgetStatus,
  formatKeys,
  formatTable,
  formatTime,
  formatUsageLine,
  formatUsageReport,
  formatUsd,
} from "./format.js";

function usage(overrides: Partial<UsageRecorded> = {}): UsageRecorded {
  return UsageRecorded.fromPartial({
    requestId: "req_1",
    timestamp: "2025-03-04T05:06:07.089Z",
    keyId: "k_1",
    team: "research",
    user: "",
    modelRequested: "tiny",
    model: "local-tiny",
    provider: "local",
    inputTokens: 10,
    outputTokens: 5,
    cachedTokens: 2,
    cacheHit: false,
    status: "ok",
    errorCode: "",
    latencyMs: 120.4,
    ttftMs: 30.6,
    traceId: "",
    endpoint: "chat",
    stream: true,
    reservationId: "",
    ...overrides,
  });
}

describe("formatTable", () => {
  it("pads each column to its widest cell and right-aligns numeric columns", () => {
    const text = formatTable(
      [{ header: "MODEL" }, { header: "N", align: "right" }],
      [
        ["a", "1"],
        ["longer-model", "1,000"],
      ],
    );
    expect(text).toBe(["MODEL             N", "a                 1", "longer-model  1,000", ""].join("\n"));
  });

  it("puts footer rows under a rule and leaves no trailing spaces", () => {
    const text = formatTable([{ header: "A" }, { header: "B" }], [["x", ""]], [["TOTAL", "2"]]);
    expect(text).toBe(["A      B", "x", "-----  -", "TOTAL  2", ""].join("\n"));
  });
});

describe("formatUsd", () => {
  it("shows cents, thousands separators, and tiny amounts to six decimals", () => {
    expect(formatUsd(0)).toBe("$0.00");
    expect(formatUsd(12.5)).toBe("$12.50");
    expect(formatUsd(1234.567)).toBe("$1,234.57");
    expect(formatUsd(0.000165)).toBe("$0.000165");
    expect(formatUsd(0.0000001)).toBe("<$0.000001");
    expect(formatUsd(-2)).toBe("-$2.00");
  });
});

describe("formatUsageLine", () => {
  it("prints one request: time, id, key, team, models, status, tokens and timings", () => {
    expect(formatUsageLine(usage())).toBe(
      "05:06:07.089 req_1 key=k_1 team=research tiny→local-tiny ok in=10 out=5 cached=2 latency=120ms ttft=31ms",
    );
  });

  it("shows the error code, missing fields and cache hits", () => {
    const line = formatUsageLine(
      usage({ status: "error", errorCode: "UNAVAILABLE", model: "", team: "", user: "ann", ttftMs: 0, cacheHit: true }),
    );
    expect(line).toBe(
      "05:06:07.089 req_1 key=k_1 team=- user=ann tiny→- error:UNAVAILABLE in=10 out=5 cached=2 latency=120ms ttft=- cache-hit",
    );
  });

  it("tolerates a missing timestamp", () => {
    expect(formatTime(undefined)).toBe("--:--:--.---");
    expect(formatTime("nonsense")).toBe("--:--:--.---");
  });
});

describe("formatKeys", () => {
  it("shows unlimited rates and all models plainly", () => {
    const text = formatKeys([
      {
        id: "k_1",
        name: "demo",
        team: "research",
        user: "",
        models: [],
        rpm: 60,
        tpm: 20000,
        created_at: "2025-01-02T03:04:05.000Z",
      },
      {
        id: "k_2",
        name: "bot",
        team: "",
        user: "ann",
        models: ["tiny", "gpt-4o-mini"],
        rpm: 0,
        tpm: 0,
        created_at: "x",
      },
    ]);
    const [header, first, second] = text.split("\n");
    expect(header).toMatch(/^ID\s+NAME\s+TEAM\s+USER\s+MODELS\s+RPM\s+TPM\s+CREATED \(UTC\)$/);
    expect(first).toMatch(/^k_1\s+demo\s+research\s+-\s+all\s+60\s+20,000\s+2025-01-02 03:04$/);
    expect(second).toMatch(/^k_2\s+bot\s+-\s+ann\s+tiny,gpt-4o-mini\s+-\s+-\s+x$/);
  });

  it("says so when there are no keys", () => {
    expect(formatKeys([])).toBe("No keys.\n");
  });
});

describe("formatUsageReport", () => {
  const t = (costUsd: number, requests: number) => ({
    costUsd,
    requests,
    inputTokens: requests * 100,
    outputTokens: requests * 10,
    cachedTokens: 0,
    errors: 0,
  });

  it("lists models by cost with a total row", () => {
    const text = formatUsageReport("Usage of team research this month (UTC)", {
      ...t(1.5, 30),
      errors: 1,
      byModel: { "local-tiny": t(0, 20), "gpt-4o-mini": t(1.5, 10) },
    });
    const lines = text.trimEnd().split("\n");
    expect(lines[0]).toBe("Usage of team research this month (UTC)");
    expect(lines[2]).toMatch(/^MODEL\s+REQUESTS\s+ERRORS\s+INPUT TOKENS\s+OUTPUT TOKENS\s+CACHED TOKENS\s+COST$/);
    expect(lines[3]).toMatch(/^gpt-4o-mini\s+10\s+0\s+1,000\s+100\s+0\s+\$1\.50$/);
    expect(lines[4]).toMatch(/^local-tiny\s+20\s+0\s+2,000\s+200\s+0\s+\$0\.00$/);
    expect(lines[5]).toMatch(/^-+( +-+)+$/);
    expect(lines[6]).toMatch(/^TOTAL\s+30\s+1\s+3,000\s+300\s+0\s+\$1\.50$/);
  });

  it("says so when nothing was used", () => {
    expect(formatUsageReport("T", { ...t(0, 0), byModel: {} })).toBe("T\n\nNo usage recorded.\n");
  });

  it("describes the period or day range", () => {
    expect(describeRange("month")).toBe("this month (UTC)");
    expect(describeRange("day")).toBe("today (UTC)");
    expect(describeRange("month", "2025-01-01")).toBe("from 2025-01-01 to today (UTC)");
    expect(describeRange("month", "2025-01-01", "2025-01-31")).toBe("from 2025-01-01 to 2025-01-31 (UTC)");
  });
});

describe("formatBudgetStatus", () => {
  it("shows the limit, spending, money held and what is left", () => {
    const text = formatBudgetStatus("team", "research", "month", {
      budget: { scope: "team", id: "research", period: "month", limitUsd: 10, hard: true, thresholds: [0.5, 0.8, 1] },
      spentUsd: 2.5,
      heldUsd: 0.5,
    });
    expect(text).toBe(
      "Budget for team research, per month: $10.00 (hard: requests that would exceed it are refused), alerts at 50%, 80%, 100%\n" +
        "Spent this month: $2.50 (plus $0.50 held for requests in flight); $7.00 left, 25% used\n",
    );
  });

  it("says when there is no budget and still shows the spending", () => {
    expect(formatBudgetStatus("key", "k_1", "day", { budget: null, spentUsd: 0.25, heldUsd: 0 })).toBe(
      "No day budget for key k_1.\nSpent today: $0.25\n",
    );
  });
});

describe("formatAudit", () => {
  it("shows who did what to which target, and says when older changes were left out", () => {
    const text = formatAudit({
      data: [
        {
          request_id: "r1",
          time: "2025-01-02T03:04:05.000Z",
          actor: { id: "adm_1", name: "lead", role: "admin", team: "red" },
          action: "key.create",
          target: { type: "key", id: "key_1" },
          team: "red",
          summary: { name: "app", rpm: "5" },
          source_ip: "127.0.0.1",
        },
      ],
      truncated: true,
    });
    expect(text).toContain("adm_1 (admin, team red)");
    expect(text).toContain("key key_1");
    expect(text).toContain("name=app rpm=5");
    expect(text).toMatch(/older changes not shown/);
    expect(formatAudit({ data: [], truncated: false })).toBe("No admin changes.\n");
  });
});
