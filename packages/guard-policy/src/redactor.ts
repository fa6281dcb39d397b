import type { CharSet, Rule } from "./rules.js";

/** What one call to the redactor releases. */
export interface Release {
  /** Text safe to pass on, matches replaced by `[REDACTED:<rule>]`. */
  text: string;
  /** One entry per match in `text` (a rule may repeat), in order; block matches included. */
  hits: string[];
  /** The block rule that matched, when the redactor stops on block: nothing at or after the match is released. */
  blockedBy?: string;
}

/**
 * Characters of original text kept before the unreleased part, so `\b` and lookbehinds see what came before
 * (`pii.cn_mobile` looks up to 22 characters back for an order-number label).
 */
const CONTEXT = 32;
/** In a tail, trailing characters that may not end it ("bob@example.com....") are held at most this long. */
const MAX_TAIL_HOLD = 64;

interface Group {
  table: CharSet | undefined;
  /** Union of the group's rules' start characters. */
  first: CharSet | undefined;
  /** Longest head among the group's rules, plus one lookahead character and one of slack. */
  window: number;
}

type Mode = { kind: "tail"; rule: Rule } | { kind: "until"; rule: Rule };

interface Match {
  start: number;
  end: number;
  rule: Rule;
}

/**
 * The rules grouped by character set, computed once per rule list (a policy's rules live until it is reloaded;
 * a redactor is made per request and per streamed answer). Groups are read-only once built.
 */
const groupCache = new WeakMap<readonly Rule[], Group[]>();

function groupsOf(rules: readonly Rule[]): Group[] {
  const cached = groupCache.get(rules);
  if (cached !== undefined) return cached;
  const byTable = new Map<CharSet | undefined, Group>();
  for (const r of rules) {
    const g = byTable.get(r.charset);
    const first = r.charset ? (r.first ?? r.charset) : undefined;
    if (!g) {
      byTable.set(r.charset, { table: r.charset, first: first?.slice(), window: r.maxLength + 2 });
      continue;
    }
    g.window = Math.max(g.window, r.maxLength + 2);
    if (g.first && first) for (let c = 0; c < 128; c++) g.first[c] = g.first[c]! | first[c]!;
  }
  const groups = [...byTable.values()];
  groupCache.set(rules, groups);
  return groups;
}

/** The placeholder a redacted match becomes. */
export function placeholder(ruleId: string): string {
  return `[REDACTED:${ruleId}]`;
}

/**
 * Redacts text that arrives in fragments so the result is the same however the text is split: a secret cut
 * across any number of fragments is still caught, and no character of it is released before it is recognised.
 *
 * The holdback rule (why it is sound). A match of rule r may still change with more text only if it touches the
 * end of what has arrived. Such a match is at most `maxLength(r)` long, and every character it spans is in
 * `charset(r)`, so it starts no earlier than `e(r) = max(start of the trailing run of charset(r) characters,
 * end − maxLength(r) − 2)` (the 2 leaves room for a one-character lookahead). Everything before
 * `cut = min over rules of e(r)` is final: it is scanned with leftmost-first semantics (longest, then rule order,
 * on ties), redacted and released; the rest is held. So the holdback is bounded by the longest rule
 * (`maxHoldback`), and it is tightened further by each rule's possible first characters (a match in progress
 * starts at one of them). In prose it is usually just the word being written (it could be an email's local
 * part): whitespace ends every token rule's run, and the spaced rules (phone, card, IBAN, PEM) start only with
 * digits, "+", "(", capitals or "-".
 *
 * Tokens longer than a head (JWTs, keys, email domains) are handled by the rule's `tail`: after the head the
 * redactor drops characters as they arrive instead of holding them; a private key's body is dropped until its
 * `-----END … PRIVATE KEY-----` footer (or the end of the text). Rule regexes are shared: `push` runs
 * synchronously from start to end, so their `lastIndex` is never observed by another caller.
 *
 * Limits of the guarantee: an operator pattern that can match more than its `max_length`, or that looks behind
 * more than 32 characters, may be missed across a fragment boundary; a tail followed by more than 64 characters
 * that cannot end it ("….com" + 65 dots) is cut there.
 */
export class StreamRedactor {
  private readonly rules: readonly Rule[];
  private readonly groups: Group[];
  private readonly stopOnBlock: boolean;
  private w = "";
  private pos = 0;
  private mode: Mode | undefined;
  private blocked: string | undefined;

  constructor(rules: readonly Rule[], options: { stopOnBlock: boolean }) {
    this.rules = rules;
    this.stopOnBlock = options.stopOnBlock;
    this.groups = groupsOf(rules);
  }

  /** The most characters `push` ever holds back (the longest rule, plus two). */
  get maxHoldback(): number {
    return Math.max(0, ...this.groups.map((g) => g.window), MAX_TAIL_HOLD);
  }

  /** Characters received and not yet released. */
  get held(): number {
    return this.w.length - this.pos;
  }

  /** Adds a fragment; returns what can be released now. After a block, returns nothing. */
  push(text: string): Release {
    if (this.blocked !== undefined) return { text: "", hits: [] };
    this.w += text;
    return this.run(false);
  }

  /**
   * Ends the text (after appending `last`): releases everything held, redacted, and resets so the redactor can
   * take a new text.
   */
  flush(last = ""): Release {
    if (this.blocked !== undefined) return { text: "", hits: [] };
    this.w += last;
    const out = this.run(true);
    this.w = "";
    this.pos = 0;
    this.mode = undefined;
    return out;
  }

  private run(final: boolean): Release {
    const w = this.w;
    let pos = this.pos;
    let out = "";
    const hits: string[] = [];
    const cutBase = final ? w.length : this.cutPoint(w);
    const cache: (Match | null | undefined)[] = new Array(this.rules.length);
    for (;;) {
      if (this.mode) {
        pos = this.consumeMode(w, pos, final);
        if (this.mode) break;
      }
      const cut = Math.max(cutBase, pos);
      const m = this.nextMatch(w, pos, cut, cache);
      if (!m) {
        out += w.slice(pos, cut);
        pos = cut;
        break;
      }
      out += w.slice(pos, m.start);
      hits.push(m.rule.id);
      if (m.rule.action === "block" && this.stopOnBlock) {
        this.blocked = m.rule.id;
        this.w = "";
        this.pos = 0;
        return { text: out, hits, blockedBy: m.rule.id };
      }
      out += placeholder(m.rule.id);
      pos = m.end;
      if (m.rule.tail) this.mode = { kind: "tail", rule: m.rule };
      else if (m.rule.until) this.mode = { kind: "until", rule: m.rule };
    }
    const keepFrom = Math.max(0, pos - CONTEXT);
    this.w = w.slice(keepFrom);
    this.pos = pos - keepFrom;
    return { text: out, hits };
  }

  /** Where final text ends: no match that could still change starts before it. */
  private cutPoint(w: string): number {
    let cut = w.length;
    for (const g of this.groups) {
      const limit = Math.max(0, w.length - g.window);
      let i = w.length;
      if (g.table && g.first) {
        const t = g.table;
        while (i > limit && t[w.charCodeAt(i - 1)] === 1) i--;
        // A match still in progress must also begin with one of its rules' start characters.
        const f = g.first;
        while (i < w.length && f[w.charCodeAt(i)] !== 1) i++;
      } else {
        i = limit;
      }
      if (i < cut) cut = i;
    }
    return cut;
  }

  /**
   * The leftmost match starting in [pos, cut): longest on equal starts, then the earlier rule. `cache` holds each
   * rule's next match found during this run (null: none before `cut`), so a long text with many matches is
   * scanned about once per rule instead of once per rule per match.
   */
  private nextMatch(w: string, pos: number, cut: number, cache: (Match | null | undefined)[]): Match | undefined {
    let best: Match | undefined;
    for (let k = 0; k < this.rules.length; k++) {
      let m = cache[k];
      if (m === undefined || (m !== null && m.start < pos)) {
        m = this.search(this.rules[k]!, w, pos, cut);
        cache[k] = m;
      }
      if (m && (!best || m.start < best.start || (m.start === best.start && m.end > best.end))) best = m;
    }
    return best;
  }

  /** The first valid match of one rule starting in [pos, cut), or null. */
  private search(rule: Rule, w: string, pos: number, cut: number): Match | null {
    if (rule.requires !== undefined && w.indexOf(rule.requires, pos) === -1) return null;
    const re = rule.pattern;
    re.lastIndex = pos;
    for (;;) {
      const m = re.exec(w);
      if (!m || m.index >= cut) return null;
      let len = m[0].length;
      if (rule.validate && len > 0) len = rule.validate(m[0]);
      if (len > 0) return { start: m.index, end: m.index + len, rule };
      // Rejected (or empty): look for the next candidate one character on.
      re.lastIndex = m.index + 1;
    }
  }

  /** Drops the continuation of a redacted match; returns the new position (mode cleared when it ended). */
  private consumeMode(w: string, pos: number, final: boolean): number {
    const mode = this.mode!;
    if (mode.kind === "until") {
      const until = mode.rule.until!;
      until.pattern.lastIndex = pos;
      const m = until.pattern.exec(w);
      if (m) {
        this.mode = undefined;
        return m.index + m[0].length;
      }
      if (final) {
        this.mode = undefined;
        return w.length;
      }
      // The footer may have begun in the last maxLength − 1 characters: keep those.
      return Math.max(pos, w.length - until.maxLength + 1);
    }
    const { chars, end } = mode.rule.tail!;
    let i = pos;
    while (i < w.length && chars[w.charCodeAt(i)] === 1) i++;
    let j = i;
    while (j > pos && end[w.charCodeAt(j - 1)] !== 1) j--;
    if (i < w.length || final || i - j > MAX_TAIL_HOLD) this.mode = undefined;
    return j;
  }
}

/** Redacts a complete text in one pass: the same result as pushing it in any fragments and flushing. */
export function redactText(rules: readonly Rule[], text: string): Release {
  return new StreamRedactor(rules, { stopOnBlock: false }).flush(text);
}
