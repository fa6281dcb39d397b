import type { CompiledPolicy } from "./policy.js";

/** What checkInput's per-text checks found in one text: a pure function of the policy, the role class and the text. */
export interface TextFindings {
  /** Injection rule ids that matched (always empty for the operator's roles, which are not checked). */
  injection: readonly string[];
  /** The redacted text and the rules that matched it; undefined when no rule matched. */
  redacted: { text: string; hits: readonly string[] } | undefined;
}

interface Entry {
  policy: CompiledPolicy;
  findings: TextFindings;
  chars: number;
}

/** Bookkeeping per entry (the Map slot, the objects), counted in characters. */
const ENTRY_OVERHEAD_CHARS = 64;

export interface TextCheckMemoOptions {
  /** Characters (keys and redacted texts) kept at most; the least recently used entries go first. */
  maxChars: number;
  /** Texts longer than this are checked every time and never kept. Default 65,536. */
  maxTextChars?: number;
}

/**
 * Remembers what the deterministic input checks found in texts seen recently, so a text that comes again is not
 * scanned again. A conversation resends its whole history at every turn (and an agent its whole transcript at
 * every step), and an application sends the same system prompt with every request: without this, the checks cost
 * grows with the history at every turn; with it, each turn pays for its new text only.
 *
 * Entries belong to a scope (the caller's tenant: the key's team, else the key), so whether a text is remembered,
 * which a request's timing could hint at, is never shared between tenants. The findings are computed from the text
 * itself, so no input can make the memo answer for another text. An entry made under another policy (a reload) is
 * a miss. Bounded in characters, least recently used first out.
 */
export class TextCheckMemo {
  private readonly entries = new Map<string, Entry>();
  private chars = 0;
  private readonly maxTextChars: number;

  constructor(private readonly options: TextCheckMemoOptions) {
    this.maxTextChars = options.maxTextChars ?? 65_536;
  }

  /** Characters held now (for tests and a gauge). */
  get size(): number {
    return this.chars;
  }

  /**
   * The findings for `text` under `policy` in `scope`, from the memo or from `compute` (whose result is then kept).
   * `operator` tells the operator's roles (system, developer), which are not checked for injection, apart.
   */
  findings(
    policy: CompiledPolicy,
    scope: string,
    operator: boolean,
    text: string,
    compute: () => TextFindings,
  ): TextFindings {
    if (text.length > this.maxTextChars || this.options.maxChars <= 0) return compute();
    // The scope's length goes first: no scope (a team name may hold any character) can run on into the text.
    const key = `${operator ? "o" : "u"}${scope.length}:${scope}${text}`;
    const hit = this.entries.get(key);
    if (hit !== undefined) {
      this.entries.delete(key);
      if (hit.policy === policy) {
        this.entries.set(key, hit);
        return hit.findings;
      }
      this.chars -= hit.chars;
    }
    const findings = compute();
    const chars = key.length + (findings.redacted?.text.length ?? 0) + ENTRY_OVERHEAD_CHARS;
    if (chars > this.options.maxChars) return findings;
    this.entries.set(key, { policy, findings, chars });
    this.chars += chars;
    for (const [k, e] of this.entries) {
      if (this.chars <= this.options.maxChars) break;
      this.entries.delete(k);
      this.chars -= e.chars;
    }
    return findings;
  }
}
