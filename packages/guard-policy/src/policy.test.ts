import { describe, expect, it } from "vitest";
import { compileGuardSection, GuardPolicyError, parseGuardSection, resolvePolicy, selectPolicy } from "./policy.js";

describe("parseGuardSection", () => {
  it("gives the safe defaults when the section is absent", () => {
    const r = parseGuardSection(undefined);
    if (!r.success) throw new Error(r.problems.join("\n"));
    const p = r.policies.default;
    expect(p.maxInputTokens).toBe(32_000);
    expect(p.injection.length).toBeGreaterThan(0);
    expect(p.inputRules.map((x) => x.id)).toContain("pii.email");
    expect(p.inputRules.every((x) => x.action === "redact")).toBe(true);
    expect(p.outputRules.map((x) => x.id)).toContain("secret.openai");
  });

  it("applies actions, turns rules off, and keeps output secret redaction on regardless", () => {
    const r = parseGuardSection({
      max_input_tokens: 100,
      injection: { enabled: false },
      pii: { email: "block", phone: "off" },
      secrets: { action: "off" },
      blocked_patterns: [{ id: "no-internal-hosts", pattern: "corp\\.internal", action: "block" }],
    });
    if (!r.success) throw new Error(r.problems.join("\n"));
    const p = r.policies.default;
    expect(p.injection).toEqual([]);
    const input = Object.fromEntries(p.inputRules.map((x) => [x.id, x.action]));
    expect(input["pii.email"]).toBe("block");
    expect(input["pii.phone"]).toBeUndefined();
    expect(input["secret.openai"]).toBeUndefined();
    expect(input["pattern.no-internal-hosts"]).toBe("block");
    const output = Object.fromEntries(p.outputRules.map((x) => [x.id, x.action]));
    expect(output["secret.openai"]).toBe("redact");
    expect(output["pii.email"]).toBe("redact");
    expect(output["pattern.no-internal-hosts"]).toBe("block");
  });

  it("lists every problem with its path", () => {
    const r = parseGuardSection({
      max_input_tokens: -1,
      pii: { email: "maybe" },
      blocked_patterns: [
        { id: "a", pattern: "(" },
        { id: "a", pattern: "x*" },
      ],
      surprise: true,
    });
    expect(r.success).toBe(false);
    if (r.success) return;
    const text = r.problems.join("\n");
    expect(text).toContain("guard.max_input_tokens");
    expect(text).toContain("guard.pii.email");
    expect(text).toContain("guard.blocked_patterns.0.pattern: not a valid regex");
    expect(text).toContain("guard.blocked_patterns.1.pattern: matches the empty string");
    expect(text).toContain('duplicate id "a"');
    expect(text).toContain("surprise");
  });

  it("builds named policies from the defaults, not from the top level", () => {
    const r = parseGuardSection({ max_input_tokens: 10, policies: { strict: { pii: { email: "block" } } } });
    if (!r.success) throw new Error(r.problems.join("\n"));
    const strict = selectPolicy(r.policies, "strict");
    expect(strict?.maxInputTokens).toBe(32_000);
    expect(strict?.inputRules.find((x) => x.id === "pii.email")?.action).toBe("block");
    expect(selectPolicy(r.policies, "")?.maxInputTokens).toBe(10);
    expect(selectPolicy(r.policies, "nope")).toBeUndefined();
  });
});

describe("guard.deep", () => {
  const parse = (raw: unknown) => {
    const r = parseGuardSection(raw);
    if (!r.success) throw new Error(r.problems.join("\n"));
    return r.policies;
  };

  it("is off unless a policy sets it", () => {
    expect(parse({}).default.deep).toBeUndefined();
  });

  it("compiles a guard model with its defaults", () => {
    const p = parse({ deep: { model: "llama-guard" } }).default.deep;
    expect(p).toEqual({
      source: { kind: "model", model: "llama-guard", format: "llama_guard" },
      input: true,
      output: false,
      mode: "block",
      timeoutMs: 2_000,
      onError: "allow",
      categories: undefined,
    });
  });

  it("compiles a moderation upstream, apply_to both and shadow mode", () => {
    const p = parse({
      deep: {
        moderation: { base_url: "http://127.0.0.1:9/v1/", api_key_env: "MOD_KEY" },
        apply_to: "both",
        mode: "shadow",
        on_error: "block",
        timeout_ms: 300,
        categories: ["violence", "harassment/threatening"],
      },
    }).default.deep;
    expect(p).toMatchObject({
      source: {
        kind: "moderation",
        baseUrl: "http://127.0.0.1:9/v1",
        apiKeyEnv: "MOD_KEY",
        model: "omni-moderation-latest",
      },
      input: true,
      output: true,
      mode: "shadow",
      onError: "block",
      timeoutMs: 300,
      categories: ["violence", "harassment/threatening"],
    });
  });

  it("rejects both or neither source, unknown categories and a format on moderation", () => {
    const problems = (raw: unknown) => {
      const r = parseGuardSection(raw);
      return r.success ? "" : r.problems.join("\n");
    };
    expect(problems({ deep: { apply_to: "input" } })).toContain("guard.deep: set exactly one of model or moderation");
    expect(problems({ deep: { model: "m", moderation: { base_url: "http://x/v1" } } })).toContain("exactly one");
    expect(problems({ deep: { model: "m", categories: ["S1", "S15"] } })).toContain(
      'guard.deep.categories.1: unknown category "S15"',
    );
    expect(problems({ deep: { model: "m", format: "shieldgemma", categories: ["S1"] } })).toContain(
      'unknown category "S1"',
    );
    expect(problems({ deep: { moderation: { base_url: "http://x/v1" }, format: "llama_guard" } })).toContain(
      "guard.deep.format",
    );
    expect(problems({ policies: { strict: { deep: { model: "m", mode: "loud" } } } })).toContain(
      "guard.policies.strict.deep.mode",
    );
  });
});

describe("resolvePolicy", () => {
  const r = parseGuardSection({
    policies: { strict: { deep: { model: "lg" } }, lax: { injection: { enabled: false } } },
    keys: { key_a: "lax" },
    teams: { research: "strict" },
  });
  if (!r.success) throw new Error(r.problems.join("\n"));
  const set = r.policies;

  it("takes the named policy, then the key's, then the team's, then the default", () => {
    expect(resolvePolicy(set, { policy: "strict" })?.name).toBe("strict");
    expect(resolvePolicy(set, { keyId: "key_a", team: "research" })?.name).toBe("lax");
    expect(resolvePolicy(set, { keyId: "key_b", team: "research" })?.name).toBe("strict");
    expect(resolvePolicy(set, { keyId: "key_b", team: "other" })?.name).toBe("");
    expect(resolvePolicy(set, { policy: "nope" })).toBeUndefined();
  });

  it("refuses assignments to policies that do not exist", () => {
    const bad = parseGuardSection({ keys: { key_a: "missing" } });
    expect(bad.success).toBe(false);
    if (!bad.success) expect(bad.problems.join("\n")).toContain('guard.keys.key_a: no policy named "missing"');
    expect(() => compileGuardSection({ teams: { t: "missing" } })).toThrow(GuardPolicyError);
  });
});
