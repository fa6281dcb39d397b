import { z } from "zod";
import { LLAMA_GUARD_CATEGORIES, SHIELDGEMMA_HARMS } from "./hazards.js";
import { INJECTION_RULES, type InjectionRule } from "./injection.js";
import { operatorRule, PII_KINDS, PII_RULES, type Rule, SECRET_RULES } from "./rules.js";

/*
 * The `guard:` section of the catalog file (MESH_CONFIG). Every field is optional; the values shown are the
 * defaults, so a catalog without `guard:` gets this policy.
 *
 * guard:
 *   max_input_tokens: 32000          # estimated input tokens (@tokenmesh/tokens) above this -> block
 *                                    # (length.max_input_tokens)
 *   injection: { enabled: true }     # prompt-injection phrasings in English and Chinese, also base64-encoded or
 *                                    # disguised (full-width, zero-width, homoglyphs, "i.g.n.o.r.e") -> block
 *                                    # (injection.<family>; injection.base64_payload when it came encoded)
 *   pii:                             # per kind: redact | block | off (pii.<kind>)
 *     email: redact
 *     phone: redact                  # international (+CC …) and North American numbers
 *     credit_card: redact            # 13–19 digits passing Luhn
 *     us_ssn: redact
 *     iban: redact                   # ISO 13616 mod-97 check
 *     cn_mobile: redact              # mainland mobiles 1[3-9]x xxxx xxxx, +86/0086/86 and spaces or hyphens
 *                                    # optional; not right after an order/tracking label ("订单号", "order #")
 *     cn_resident_id: redact         # 居民身份证 (18 characters): MOD 11-2 check digit, province, real birth date
 *     cn_bank_card: redact           # 16–19 digits from 62/60/94/95 passing Luhn (UnionPay and domestic BINs)
 *     cn_passport: redact            # E/G + 8 digits, E + letter + 7 digits, DE/SE/PE + 7 digits
 *                                    # A match both a mainland and a generic kind cover is reported as the
 *                                    # mainland one; turning that one off leaves it to the generic rule
 *   secrets: { action: redact }      # API-key-like strings in input: redact | block | off (secret.<kind>);
 *                                    # in output they are ALWAYS redacted, whatever this says
 *   blocked_patterns:                # operator rules (pattern.<id>), in input and output
 *     - id: no-internal-hosts        # letters, digits, "_", "-", "."
 *       pattern: "corp\\.internal"   # a JavaScript regex
 *       action: block                # block (default) | redact
 *       flags: i                     # optional: any of i, m, s, u
 *       max_length: 64               # optional: longest match, for the output stream's holdback; inferred for
 *                                    # patterns without quantifiers, else 100
 *   deep:                            # optional (absent = off): the deep tier, a model-based check run by the
 *                                    # guard service; only requests whose policy has it pay that hop
 *     model: llama-guard-3-8b        # a catalog model id, called through the router ...
 *     format: llama_guard            # ... prompted as llama_guard (S1-S14) or shieldgemma (Yes/No)
 *     # moderation:                  # ... or instead of model: an OpenAI-compatible /v1/moderations upstream
 *     #   { base_url: "https://api.openai.com/v1", api_key_env: OPENAI_API_KEY, model: omni-moderation-latest }
 *     apply_to: input                # input | output | both
 *     mode: block                    # block | shadow (record the verdict, never block)
 *     timeout_ms: 2000               # the whole check, model call included
 *     on_error: allow                # allow | block, when the check times out or fails
 *     categories: [S1, S9, S11]      # optional: llama_guard S1-S14 (default all 14), shieldgemma harms
 *                                    # (default all four), moderation categories that count (default: `flagged`)
 *   policies:                        # optional named policies, chosen by the request's `policy` field; each is
 *     strict: { pii: { email: block } }   # a complete policy of the same shape, its absent fields at the defaults
 *                                    # above (not inherited from the top level)
 *   keys: { key_abc123: strict }     # optional: the named policy of a virtual key (by key id) ...
 *   teams: { research: strict }      # ... or of a team; a key's entry wins over its team's, else the default
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

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

const ModerationSchema = z
  .object({
    /** Ends with /v1: the request goes to `<base_url>/moderations`. */
    base_url: z.string().url(),
    /** Name of the env var holding the key (never the key itself). */
    api_key_env: z
      .string()
      .regex(/^[A-Z_][A-Z0-9_]*$/)
      .optional(),
    model: z.string().min(1).default("omni-moderation-latest"),
    headers: z.record(z.string(), z.string()).default({}),
  })
  .strict();

export const DeepSchema = z
  .object({
    model: z.string().min(1).optional(),
    moderation: ModerationSchema.optional(),
    format: z.enum(["llama_guard", "shieldgemma"]).optional(),
    apply_to: z.enum(["input", "output", "both"]).default("input"),
    mode: z.enum(["block", "shadow"]).default("block"),
    timeout_ms: z.number().int().min(1).max(120_000).default(2_000),
    on_error: z.enum(["allow", "block"]).default("allow"),
    categories: z.array(z.string().min(1)).min(1).optional(),
  })
  .strict()
  .superRefine((d, ctx) => {
    if ((d.model === undefined) === (d.moderation === undefined)) {
      ctx.addIssue({ code: "custom", path: [], message: "set exactly one of model or moderation" });
      return;
    }
    if (d.moderation && d.format !== undefined) {
      ctx.addIssue({ code: "custom", path: ["format"], message: "format applies to model, not moderation" });
    }
    const known =
      d.model === undefined
        ? undefined
        : (d.format ?? "llama_guard") === "llama_guard"
          ? Object.keys(LLAMA_GUARD_CATEGORIES)
          : [...SHIELDGEMMA_HARMS];
    d.categories?.forEach((c, i) => {
      if (known && !known.includes(c)) {
        ctx.addIssue({
          code: "custom",
          path: ["categories", i],
          message: `unknown category "${c}" (${known.join(", ")})`,
        });
      }
    });
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
        cn_mobile: Action3.default("redact"),
        cn_resident_id: Action3.default("redact"),
        cn_bank_card: Action3.default("redact"),
        cn_passport: Action3.default("redact"),
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
    deep: DeepSchema.optional(),
  })
  .strict();

export const GuardSectionSchema = PolicySchema.extend({
  policies: z.record(z.string().regex(NAME), PolicySchema).default({}),
  keys: z.record(z.string().min(1), z.string().regex(NAME)).default({}),
  teams: z.record(z.string().min(1), z.string().regex(NAME)).default({}),
})
  .strict()
  .superRefine((g, ctx) => {
    for (const field of ["keys", "teams"] as const) {
      for (const [id, name] of Object.entries(g[field])) {
        if (!(name in g.policies)) {
          ctx.addIssue({ code: "custom", path: [field, id], message: `no policy named "${name}" in guard.policies` });
        }
      }
    }
  });

export type PolicyConfig = z.infer<typeof PolicySchema>;

/** Where the deep tier's verdict comes from. */
export type DeepSource =
  | { readonly kind: "model"; readonly model: string; readonly format: "llama_guard" | "shieldgemma" }
  | {
      readonly kind: "moderation";
      readonly baseUrl: string;
      readonly apiKeyEnv: string | undefined;
      readonly model: string;
      readonly headers: Readonly<Record<string, string>>;
    };

/** A policy's deep tier, ready to run. */
export interface DeepPolicy {
  readonly source: DeepSource;
  /** Check the request's messages before routing. */
  readonly input: boolean;
  /** Check each choice's complete answer. */
  readonly output: boolean;
  /** "shadow": the verdict is recorded (event, metric) and never blocks. */
  readonly mode: "block" | "shadow";
  readonly timeoutMs: number;
  /** What a timeout or failure of the check means. */
  readonly onError: "allow" | "block";
  /** The categories that count; undefined means the format's full list (moderation: its `flagged`). */
  readonly categories: readonly string[] | undefined;
}

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
  /** The deep tier, when this policy turns it on. */
  readonly deep: DeepPolicy | undefined;
}

/** The default policy, the named ones, and which keys and teams use a named one. */
export interface PolicySet {
  readonly default: CompiledPolicy;
  readonly named: ReadonlyMap<string, CompiledPolicy>;
  /** Key id → policy name. */
  readonly byKey: ReadonlyMap<string, string>;
  /** Team → policy name. */
  readonly byTeam: ReadonlyMap<string, string>;
}

function compileDeep(d: NonNullable<PolicyConfig["deep"]>): DeepPolicy {
  const source: DeepSource = d.moderation
    ? {
        kind: "moderation",
        baseUrl: d.moderation.base_url.replace(/\/+$/, ""),
        apiKeyEnv: d.moderation.api_key_env,
        model: d.moderation.model,
        headers: d.moderation.headers,
      }
    : { kind: "model", model: d.model!, format: d.format ?? "llama_guard" };
  return {
    source,
    input: d.apply_to !== "output",
    output: d.apply_to !== "input",
    mode: d.mode,
    timeoutMs: d.timeout_ms,
    onError: d.on_error,
    categories: d.categories,
  };
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
    deep: config.deep ? compileDeep(config.deep) : undefined,
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
  const { policies, keys, teams, ...defaults } = result.data;
  const named = new Map<string, CompiledPolicy>();
  for (const [name, config] of Object.entries(policies)) named.set(name, compilePolicy(name, config));
  return {
    success: true,
    policies: {
      default: compilePolicy("", defaults),
      named,
      byKey: new Map(Object.entries(keys)),
      byTeam: new Map(Object.entries(teams)),
    },
  };
}

/**
 * Like {@link parseGuardSection}, throwing a {@link GuardPolicyError} listing every problem: the shape a
 * LiveCatalog `derive` wants (start-up fails, a reload keeps the previous policies).
 */
export function compileGuardSection(raw: unknown): PolicySet {
  const r = parseGuardSection(raw);
  if (!r.success) throw new GuardPolicyError(r.problems);
  return r.policies;
}

/** The catalog's `guard:` section is invalid; `problems` names each field as `guard.<path>: <message>`. */
export class GuardPolicyError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`invalid guard section:\n  - ${problems.join("\n  - ")}`);
    this.name = "GuardPolicyError";
  }
}

/** The policy a request names ("" is the default); undefined when no such policy exists. */
export function selectPolicy(set: PolicySet, name: string): CompiledPolicy | undefined {
  return name === "" ? set.default : set.named.get(name);
}

/**
 * The policy for a request: the one it names, else its key's (`guard.keys`), else its team's (`guard.teams`),
 * else the default. Undefined only when a name is given and unknown (assignments are checked at load time).
 */
export function resolvePolicy(
  set: PolicySet,
  request: { policy?: string; keyId?: string; team?: string },
): CompiledPolicy | undefined {
  if (request.policy) return set.named.get(request.policy);
  const assigned =
    (request.keyId ? set.byKey.get(request.keyId) : undefined) ??
    (request.team ? set.byTeam.get(request.team) : undefined);
  return (assigned !== undefined ? set.named.get(assigned) : undefined) ?? set.default;
}
