import { describe, expect, it } from "vitest";
import { helpText, parseCommandLine } from "./args.js";
import { UsageError } from "./errors.js";

function usageError(argv: string[]): UsageError {
  try {
    parseCommandLine(argv);
  } catch (err) {
    if (err instanceof UsageError) return err;
    throw err;
  }
  throw new Error(`parsed without error: ${argv.join(" ")}`);
}

describe("parseCommandLine", () => {
  it("parses usage tail filters", () => {
    expect(parseCommandLine(["usage", "tail", "--key", "k_1", "--model", "tiny"])).toEqual({
      command: { name: "usage tail", filter: { key: "k_1", model: "tiny" } },
      url: undefined,
      json: false,
    });
  });

  it("takes global options before or after the command", () => {
    const a = parseCommandLine(["--url", "http://gw:9", "--json", "keys", "list"]);
    const b = parseCommandLine(["keys", "list", "--json", "--url=http://gw:9"]);
    expect(a).toEqual({ command: { name: "keys list" }, url: "http://gw:9", json: true });
    expect(b).toEqual(a);
  });

  it("builds the key creation body with typed limits and a model list", () => {
    const { command } = parseCommandLine([
      "keys",
      "create",
      "--name",
      "demo",
      "--team",
      "research",
      "--models",
      "tiny, gpt-4o-mini,",
      "--rpm",
      "60",
      "--tpm",
      "20000",
    ]);
    expect(command).toEqual({
      name: "keys create",
      body: { name: "demo", team: "research", models: ["tiny", "gpt-4o-mini"], rpm: 60, tpm: 20000 },
    });
  });

  it("leaves unset key fields out so the gateway's defaults apply", () => {
    expect(parseCommandLine(["keys", "create", "--name", "n"]).command).toEqual({
      name: "keys create",
      body: { name: "n" },
    });
  });

  it("rejects limits that are not whole numbers", () => {
    expect(usageError(["keys", "create", "--name", "n", "--rpm", "1.5"]).message).toMatch(
      /--rpm must be a whole number/,
    );
    expect(usageError(["keys", "create", "--name", "n", "--tpm", "lots"]).command).toEqual(["keys", "create"]);
  });

  it("takes the key id of revoke as a positional", () => {
    expect(parseCommandLine(["keys", "revoke", "k_9"]).command).toEqual({ name: "keys revoke", id: "k_9" });
    expect(usageError(["keys", "revoke"]).message).toBe("missing <id>");
    expect(usageError(["keys", "revoke", "a", "b"]).message).toBe('unexpected argument "b"');
  });

  it("requires exactly one scope for usage report and defaults the period to month", () => {
    expect(parseCommandLine(["usage", "report", "--team", "research"]).command).toEqual({
      name: "usage report",
      scope: "team",
      id: "research",
      period: "month",
    });
    expect(parseCommandLine(["usage", "report", "--key", "k_1", "--period", "day"]).command).toMatchObject({
      scope: "key",
      id: "k_1",
      period: "day",
    });
    expect(usageError(["usage", "report"]).message).toMatch(/exactly one of/);
    expect(usageError(["usage", "report", "--team", "a", "--user", "b"]).message).toMatch(/exactly one of/);
    expect(usageError(["usage", "report", "--team", "a", "--period", "week"]).message).toMatch(/day or month/);
  });

  it("validates the day range of usage report", () => {
    expect(
      parseCommandLine(["usage", "report", "--model", "m", "--start", "2025-01-01", "--end", "2025-01-31"]).command,
    ).toMatchObject({
      start: "2025-01-01",
      end: "2025-01-31",
    });
    expect(usageError(["usage", "report", "--model", "m", "--start", "01/02/2025"]).message).toMatch(
      /--start must be a day/,
    );
  });

  it("parses a budget with dollars, hard flag and thresholds", () => {
    const { command } = parseCommandLine([
      "budgets",
      "set",
      "--scope",
      "team",
      "--id",
      "research",
      "--period",
      "month",
      "--limit-usd",
      "$12.5",
      "--hard",
      "--thresholds",
      "0.5,0.9",
    ]);
    expect(command).toEqual({
      name: "budgets set",
      body: { scope: "team", id: "research", period: "month", limitUsd: 12.5, hard: true, thresholds: [0.5, 0.9] },
    });
    const soft = parseCommandLine([
      "budgets",
      "set",
      "--scope",
      "key",
      "--id",
      "k",
      "--period",
      "day",
      "--limit-usd",
      "0",
    ]);
    expect(soft.command).toMatchObject({ body: { limitUsd: 0, hard: false } });
  });

  it("rejects bad budget arguments", () => {
    const base = ["budgets", "set", "--scope", "team", "--id", "r", "--period", "month"];
    expect(usageError(base).message).toBe("--limit-usd is required");
    expect(usageError([...base, "--limit-usd", "-3"]).message).toMatch(/ambiguous|must be an amount/);
    expect(usageError([...base, "--limit-usd", "abc"]).message).toMatch(/must be an amount/);
    expect(usageError([...base, "--limit-usd", "1", "--thresholds", "0.5,x"]).message).toMatch(/--thresholds/);
    expect(
      usageError(["budgets", "set", "--scope", "model", "--id", "r", "--period", "month", "--limit-usd", "1"]).message,
    ).toMatch(/--scope must be key or team or user/);
    expect(usageError(["budgets", "get", "--scope", "team", "--id", "r"]).message).toMatch(/--period is required/);
  });

  it("reports unknown commands and options with the help that applies", () => {
    expect(usageError([]).command).toEqual([]);
    expect(usageError(["nope"]).message).toBe('unknown command "nope"');
    const group = usageError(["keys"]);
    expect(group.message).toMatch(/needs one of: create, list, revoke/);
    expect(group.command).toEqual(["keys"]);
    expect(usageError(["keys", "rotate"]).message).toBe('unknown command "keys rotate"');
    const unknown = usageError(["keys", "list", "--bogus"]);
    expect(unknown.message).toMatch(/bogus/);
    expect(unknown.command).toEqual(["keys", "list"]);
    expect(unknown.exitCode).toBe(2);
  });

  it("turns --help into a help command for the deepest command named", () => {
    expect(parseCommandLine(["--help"]).command).toEqual({ name: "help", topic: [] });
    expect(parseCommandLine(["budgets", "-h"]).command).toEqual({ name: "help", topic: ["budgets"] });
    expect(parseCommandLine(["budgets", "set", "--help"]).command).toEqual({ name: "help", topic: ["budgets", "set"] });
    // Help wins over missing required options.
    expect(parseCommandLine(["keys", "create", "--help"]).command).toEqual({ name: "help", topic: ["keys", "create"] });
    expect(parseCommandLine(["help", "usage", "tail"]).command).toEqual({ name: "help", topic: ["usage", "tail"] });
  });
});

describe("helpText", () => {
  it("lists every command at the top level", () => {
    const text = helpText();
    for (const c of [
      "usage tail",
      "usage report",
      "keys create",
      "keys list",
      "keys revoke",
      "budgets set",
      "budgets get",
    ]) {
      expect(text).toContain(`  ${c} `);
    }
    expect(text).toContain("TOKENMESH_ADMIN_KEY");
  });

  it("shows one command's usage and options", () => {
    const text = helpText(["budgets", "set"]);
    expect(text).toMatch(/^Usage: tokenmesh budgets set --scope key\|team\|user/);
    expect(text).toContain("--limit-usd N");
    expect(text).toContain("--hard");
    expect(text).not.toContain("keys create");
  });
});

describe("audit list", () => {
  it("takes optional actor, action, since and limit filters", () => {
    expect(parseCommandLine(["audit", "list"]).command).toEqual({ name: "audit list" });
    expect(
      parseCommandLine([
        "audit",
        "list",
        "--actor",
        "adm_1",
        "--action",
        "key.create",
        "--since",
        "2025-01-01T00:00:00Z",
        "--limit",
        "5",
      ]).command,
    ).toEqual({ name: "audit list", actor: "adm_1", action: "key.create", since: "2025-01-01T00:00:00Z", limit: 5 });
    expect(usageError(["audit", "list", "--limit", "many"]).message).toMatch(/limit/);
  });
});
