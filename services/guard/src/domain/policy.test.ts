import { describe, expect, it } from "vitest";
import { parseGuardSection, selectPolicy } from "./policy.js";

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
