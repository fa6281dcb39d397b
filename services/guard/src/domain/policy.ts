import { z } from "zod";
import { INJECTION_RULES, type InjectionRule } from "./injection.js";
import { operatorRule, PII_KINDS, PII_RULES, type Rule, SECRET_RULES } from "./rules.js";

/*
 * The `guard:` section of the catalog file (MESH_CONFIG). Every field is optional; the values shown are the
 * defaults, so a catalog without `guard:` gets this policy.
 *
 * guard:
 *   max_input_tokens: 32000          # estimated input tokens (see tokens.ts) above this -> block (length.max_input_tokens)
 *   injection: { enabled: true }     # common prompt-injection phrasings -> block (injection.<name>)
 *   pii:                             # per kind: redact | block | off (pii.<kind>)
 *     { email: redact, phone: redact, credit_card: redact, us_ssn: redact, iban: redact }
 *   secrets: { action: redact }      # API-key-like strings in input: redact | block | off (secret.<kind>);
 *                                    # in output they are ALWAYS redacted, whatever this says
 *   blocked_patterns:                # operator rules (pattern.<id>), in input and output
 *     - id: no-internal-hosts        # letters, digits, "_", "-", "."
 *       pattern: "corp\\.internal"   # a JavaScript regex
 *       action: block                # block (default) | redact
 *       flags: i                     # optional: any of i, m, s, u
 *       max_length: 64               # optional: longest match, for the output stream's holdback; inferred for
 *                                    # patterns without quantifiers, else 100
 *   policies:                        # optional named policies, chosen by the request's `policy` field; each is
 *     strict: { pii: { email: block } }   # a complete policy of the same shape, its absent fields at the defaults
 *                                    # above (not inherited from the top level)
 *
 * In output, PII set to redact or block is redacted (a stream cannot be un-sent, so PII never stops it), and
 * blocked_patterns with action block stop the stream.
 */

const Action3 = z.enum(["redact", "block", "off"]);

const BlockedPatternSchema = z
  .object({
    id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, "ids are letters, digits, _ . -"),
    pattern: z.string().min(1),
    action: z.enum(["block", "redact"]).default("block"),
    flags: z
      .string()
      .regex(/^[imsu]*$/, "flags are any of i, m, s, u")
      .default(""),
    max_length: z.number().int().min(1).max(4096).optional(),
  })
  .strict()
  .superRefine((p, ctx) => {
    let re: RegExp;
    try {
      re = new RegExp(p.pattern, p.flags);
    } catch (err) {
      ctx.addIssue({ code: "custom", path: ["pattern"], message: `not a valid regex: ${(err as Error).message}` });
      return;
    }
    if (re.test("")) ctx.addIssue({ code: "custom", path: ["pattern"], message: "matches the empty string" });
  });

export const PolicySchema = z
  .object({
    max_input_tokens: z.number().int().positive().default(32_000),
    injection: z
      .object({ enabled: z.boolean().default(true) })
      .strict()
      .prefault({}),
    pii: z
      .object({
        email: Action3.default("redact"),
        phone: Action3.default("redact"),
        credit_card: Action3.default("redact"),
        us_ssn: Action3.default("redact"),
        iban: Action3.default("redact"),
      })
      .strict()
      .prefault({}),
    secrets: z
      .object({ action: Action3.default("redact") })
      .strict()
      .prefault({}),
    blocked_patterns: z
      .array(BlockedPatternSchema)
      .default([])
      .superRefine((list, ctx) => {
        const seen = new Set<string>();
        list.forEach((p, i) => {
          if (seen.has(p.id)) ctx.addIssue({ code: "custom", path: [i, "id"], message: `duplicate id "${p.id}"` });
          seen.add(p.id);
        });
      }),
  })
  .strict();

export const GuardSectionSchema = PolicySchema.extend({
  policies: z.record(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/), PolicySchema).default({}),
}).strict();

export type PolicyConfig = z.infer<typeof PolicySchema>;

/** A policy ready to run: rules compiled, `off` entries left out. Shared by all requests; never mutated. */
export interface CompiledPolicy {
  /** "" for the default policy. */
  readonly name: string;
  readonly maxInputTokens: number;
  /** Empty when injection checks are disabled. */
  readonly injection: readonly InjectionRule[];
  /** Secrets, PII and operator patterns as configured for input. */
  readonly inputRules: readonly Rule[];
  /** Secrets (always redact), PII (redact unless off) and operator patterns for output. */
  readonly outputRules: readonly Rule[];
}

/** The default policy and the named ones. */
export interface PolicySet {
  readonly default: CompiledPolicy;
  readonly named: ReadonlyMap<string, CompiledPolicy>;
}

/** Builds the runnable form of one validated policy. */
export function compilePolicy(name: string, config: PolicyConfig): CompiledPolicy {
  const inputRules: Rule[] = [];
  const outputRules: Rule[] = [];
  for (const r of SECRET_RULES) {
    if (config.secrets.action !== "off") inputRules.push({ ...r, action: config.secrets.action });
    outputRules.push({ ...r, action: "redact" });
  }
  for (const kind of PII_KINDS) {
    const action = config.pii[kind];
    if (action === "off") continue;
    inputRules.push({ ...PII_RULES[kind], action });
    outputRules.push({ ...PII_RULES[kind], action: "redact" });
  }
  for (const p of config.blocked_patterns) {
    const rule = operatorRule({
      id: p.id,
      pattern: p.pattern,
      action: p.action,
      flags: p.flags,
      maxLength: p.max_length,
    });
    inputRules.push(rule);
    outputRules.push(rule);
  }
  return {
    name,
    maxInputTokens: config.max_input_tokens,
    injection: config.injection.enabled ? INJECTION_RULES : [],
    inputRules,
    outputRules,
  };
}

export type ParsePolicyResult = { success: true; policies: PolicySet } | { success: false; problems: string[] };

/**
 * Validates the catalog's `guard:` section (undefined means "not present": the defaults) and compiles it.
 * On failure, `problems` names every invalid field as `guard.<path>: <message>`.
 */
export function parseGuardSection(raw: unknown): ParsePolicyResult {
  const result = GuardSectionSchema.safeParse(raw ?? {});
  if (!result.success) {
    return {
      success: false,
      problems: result.error.issues.map((i) => `guard${i.path.map((p) => `.${String(p)}`).join("")}: ${i.message}`),
    };
  }
  const { policies, ...defaults } = result.data;
  const named = new Map<string, CompiledPolicy>();
  for (const [name, config] of Object.entries(policies)) named.set(name, compilePolicy(name, config));
  return { success: true, policies: { default: compilePolicy("", defaults), named } };
}

/** The policy a request names ("" is the default); undefined when no such policy exists. */
export function selectPolicy(set: PolicySet, name: string): CompiledPolicy | undefined {
  return name === "" ? set.default : set.named.get(name);
}
