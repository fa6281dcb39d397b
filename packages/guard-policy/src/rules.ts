import { cnResidentIdValid, ibanValid, luhnValid } from "./checksums.js";

/** What a rule does with a match: rewrite it to `[REDACTED:<rule>]`, or refuse the whole text. */
export type RuleAction = "redact" | "block";

/** A set of ASCII characters as a lookup table (index = char code); non-ASCII characters are never members. */
export type CharSet = Uint8Array;

/** Builds a CharSet from the body of a regex character class, e.g. `"A-Za-z0-9_-"`. */
export function charSet(classBody: string): CharSet {
  const re = new RegExp(`^[${classBody}]$`);
  const table = new Uint8Array(128);
  for (let c = 0; c < 128; c++) table[c] = re.test(String.fromCharCode(c)) ? 1 : 0;
  return table;
}

/**
 * One detector. The stream filter's soundness rests on two promises each rule makes (see redactor.ts):
 * every match of `pattern` is at most `maxLength` UTF-16 units long, and every character any attempt of
 * `pattern` can consume is in `charset` (when set); lookarounds may read at most one character past either
 * side of that run.
 */
export interface Rule {
  /** Reported in responses, events and metrics: `secret.openai`, `pii.email`, `pattern.<id>`. */
  readonly id: string;
  readonly action: RuleAction;
  /** Finds the head of a match. Must carry the `g` flag (the scanner drives it through `lastIndex`). */
  readonly pattern: RegExp;
  readonly maxLength: number;
  /** Undefined means "any character": the stream then holds back a flat `maxLength` window for this rule. */
  readonly charset?: CharSet;
  /** Characters a match can start with (a subset of `charset`); undefined means any in `charset`. */
  readonly first?: CharSet;
  /** A literal every match contains: the scanner skips the regex when it is absent (a cheap prefilter). */
  readonly requires?: string;
  /**
   * Returns how much of the head to accept (0 rejects it). Lets a rule trim a greedy match back to a valid
   * shorter one (a card number followed by more digit groups) and apply check digits.
   */
  readonly validate?: (head: string) => number;
  /**
   * After the head, redaction continues over following characters in `chars`, ending on the last one in `end`
   * (so a sentence's final period stays). This catches tokens longer than `maxLength` without holding them back.
   */
  readonly tail?: { readonly chars: CharSet; readonly end: CharSet };
  /** After the head, redaction continues through this terminator, or to the end of the text if it never comes. */
  readonly until?: { readonly pattern: RegExp; readonly maxLength: number };
}

const TOKEN = charSet("A-Za-z0-9_-");
const ALNUM = charSet("A-Za-z0-9");

function accept(predicate: (head: string) => boolean): (head: string) => number {
  return (head) => (predicate(head) ? head.length : 0);
}

/**
 * Accepts the longest prefix of `head` that ends after an alphanumeric character at a group boundary (the end,
 * or before a separator) and satisfies `predicate`. Greedy patterns over spaced groups ("4111 1111 1111 1111
 * 2024") would otherwise be rejected whole.
 */
function longestValidPrefix(predicate: (candidate: string) => boolean, minLength: number): (head: string) => number {
  return (head) => {
    for (let end = head.length; end >= minLength; end--) {
      const last = head.charCodeAt(end - 1);
      const next = end < head.length ? head.charCodeAt(end) : -1;
      if (ALNUM[last] !== 1 || (next !== -1 && ALNUM[next] === 1)) continue;
      if (predicate(head.slice(0, end))) return end;
    }
    return 0;
  };
}

function countDigits(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) n++;
  }
  return n;
}

const PEM_LABEL = "-----(?:BEGIN|END) (?:[A-Z0-9]{1,10} ){0,3}PRIVATE KEY(?: BLOCK)?-----";

/** Secret detectors, most specific first (ties between rules at the same start go to the earlier one). */
export const SECRET_RULES: readonly Omit<Rule, "action">[] = [
  {
    id: "secret.anthropic",
    pattern: /\bsk-ant-[A-Za-z0-9_-]{20}/g,
    maxLength: 27,
    requires: "sk-ant-",
    charset: TOKEN,
    first: charSet("s"),
    tail: { chars: TOKEN, end: TOKEN },
  },
  {
    id: "secret.openai",
    // Legacy `sk-<48>`, project `sk-proj-…`, service account and admin keys. The body must hold an uppercase
    // letter or a digit so hyphenated words ("sk-learn-the-basics-of-…") are not taken for keys.
    pattern: /\bsk-(?!ant-)(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20}/g,
    maxLength: 31,
    requires: "sk-",
    charset: TOKEN,
    first: charSet("s"),
    validate: accept((head) => /[A-Z0-9]/.test(head.slice(3).replace(/^(?:proj|svcacct|admin)-/, ""))),
    tail: { chars: TOKEN, end: TOKEN },
  },
  {
    id: "secret.aws_access_key",
    pattern: /\b(?:AKIA|ASIA)[0-9A-Z]{16}\b/g,
    maxLength: 20,
    charset: charSet("0-9A-Z"),
    first: charSet("A"),
  },
  {
    id: "secret.github",
    pattern: /\b(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{22})/g,
    maxLength: 40,
    charset: charSet("A-Za-z0-9_"),
    first: charSet("g"),
    tail: { chars: charSet("A-Za-z0-9_"), end: charSet("A-Za-z0-9_") },
  },
  {
    id: "secret.slack",
    pattern: /\bxox[baprs]-[A-Za-z0-9-]{10}/g,
    maxLength: 15,
    requires: "xox",
    charset: charSet("A-Za-z0-9-"),
    first: charSet("x"),
    tail: { chars: charSet("A-Za-z0-9-"), end: ALNUM },
  },
  {
    id: "secret.google_api_key",
    pattern: /\bAIza[0-9A-Za-z_-]{35}/g,
    maxLength: 39,
    requires: "AIza",
    charset: TOKEN,
    first: charSet("A"),
    tail: { chars: TOKEN, end: TOKEN },
  },
  {
    id: "secret.private_key",
    // The header identifies the block; the base64 body and footer are swallowed by `until`, so a 3 kB key is
    // redacted without a 3 kB holdback.
    pattern: new RegExp(PEM_LABEL.replace("(?:BEGIN|END)", "BEGIN"), "g"),
    maxLength: 66,
    requires: "-----BEGIN ",
    charset: charSet("A-Z0-9 -"),
    first: charSet("-"),
    until: { pattern: new RegExp(PEM_LABEL.replace("(?:BEGIN|END)", "END"), "g"), maxLength: 64 },
  },
  {
    id: "secret.jwt",
    // Header and the start of the payload identify a JWT; the rest (payload, signature) is the tail.
    pattern: /\beyJ[A-Za-z0-9_-]{5,200}\.eyJ[A-Za-z0-9_-]{2}/g,
    maxLength: 209,
    requires: "eyJ",
    charset: charSet("A-Za-z0-9_.-"),
    first: charSet("e"),
    tail: { chars: charSet("A-Za-z0-9_.-"), end: TOKEN },
  },
];

/**
 * The PII kinds a policy can configure, in the order their rules are tried: on a tie (same start, same length) the
 * earlier kind names the match, so the specific mainland formats come before the generic phone and card rules
 * that also cover them ("+86 138 …" is `pii.cn_mobile`, a UnionPay card `pii.cn_bank_card`).
 */
export const PII_KINDS = [
  "cn_resident_id",
  "cn_bank_card",
  "cn_mobile",
  "cn_passport",
  "email",
  "phone",
  "credit_card",
  "us_ssn",
  "iban",
] as const;
export type PiiKind = (typeof PII_KINDS)[number];

/**
 * Words that make an 11-digit number an order, tracking or reference number rather than a mobile number when they
 * come right before it ("订单号：13812345678", "订单号是…", "order #13812345678"). At most 22 characters: the redactor keeps 32
 * characters of context before unreleased text, so the lookbehind sees the same text however a stream is split.
 */
const NOT_A_MOBILE_CONTEXT = String.raw`(?:订单|单号|编号|流水|运单|快递|工单|发票|合同|序列号|order|invoice|tracking|shipment|ref|reference|serial|sku|#)[^\S\n]{0,2}(?:号码?|编号|number|num|no\.?|id)?[^\S\n]{0,2}[:：#是为]?[^\S\n]{0,2}`;

/** Mainland mobile number segments (13x, 145–149, 15x but 154, 162/165–167, 170–178, 18x, 19x but 194). */
const CN_MOBILE_PREFIX = String.raw`1(?:3\d|4[5-9]|5[0-35-9]|6[2567]|7[0-8]|8\d|9[0-35-9])`;

/** 18 digits laid out like a resident ID: province 11–83, a 19xx/20xx birth date, sequence and check digit. */
const ID_SHAPE = /^[1-8]\d{5}(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{4}$/;

/**
 * Whether a card number's first digit and length fit an issued card (ISO/IEC 7812). Only Visa issued 13-digit
 * numbers (they start with 4); a card starting with 1 is a 15-digit airline (UATP) card; no payment card starts
 * with 0 or 7. This keeps Luhn-valid millisecond timestamps (13 digits from 1…) and similar ids unredacted: one in
 * ten passes Luhn by chance.
 */
function plausibleIssuer(digits: string): boolean {
  const first = digits[0];
  if (digits.length === 13) return first === "4";
  if (first === "1") return digits.length === 15;
  return first !== "0" && first !== "7";
}

/** PII detectors by kind; rule ids are `pii.<kind>`. */
export const PII_RULES: Readonly<Record<PiiKind, Omit<Rule, "action">>> = {
  cn_resident_id: {
    id: "pii.cn_resident_id",
    // 18 characters, optionally spaced 6-8-4; the check digit, province and birth date are checked in validate, so
    // a real-looking number with a wrong check digit or an impossible date is left alone.
    pattern:
      /(?<![0-9A-Za-z])[1-8]\d{5} ?(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01]) ?\d{3}[\dXx](?![0-9A-Za-z])/g,
    maxLength: 20,
    charset: charSet("0-9Xx "),
    first: charSet("1-8"),
    validate: accept(cnResidentIdValid),
  },
  cn_bank_card: {
    id: "pii.cn_bank_card",
    // UnionPay (62), other mainland debit BINs (60, and the older 94/95 domestic ranges such as ICBC's 9558):
    // 16–19 digits passing Luhn, optionally grouped.
    pattern: /(?<!\d)(?:62|60|9[45])(?:[ -]?\d){14,17}(?!\d)/g,
    maxLength: 37,
    charset: charSet("0-9 -"),
    first: charSet("69"),
    validate: longestValidPrefix((s) => {
      const digits = s.replace(/[ -]/g, "");
      return digits.length >= 16 && digits.length <= 19 && luhnValid(digits);
    }, 16),
  },
  cn_mobile: {
    id: "pii.cn_mobile",
    // 11 digits in a mobile segment, optionally +86 / 0086 / 86 / (+86) and spaced or hyphenated 3-4-4; not right
    // after an order/tracking/reference label.
    pattern: new RegExp(
      String.raw`(?<![\w+(])(?<!${NOT_A_MOBILE_CONTEXT})(?:(?:\+|00)?86[ -]?|\(\+?86\) ?)?${CN_MOBILE_PREFIX}(?:[ -]?\d{4}){2}(?!\d)`,
      "gi",
    ),
    maxLength: 24,
    charset: charSet("0-9 +()-"),
    first: charSet("0-9(+"),
  },
  cn_passport: {
    id: "pii.cn_passport",
    // Ordinary passports: E or G + 8 digits, and since the E-series ran out E + a letter (not I or O) + 7 digits;
    // electronic diplomatic, service and public-affairs passports DE/SE/PE + 7 digits.
    pattern: /(?<![0-9A-Za-z])(?:[EG]\d{8}|E[A-HJ-NP-Z]\d{7}|[DSP]E\d{7})(?![0-9A-Za-z])/g,
    maxLength: 9,
    charset: charSet("A-Z0-9"),
    first: charSet("EGDSP"),
  },
  email: {
    id: "pii.email",
    // Local part, "@", the first domain label and two letters of what follows; the rest of the domain is tail.
    pattern: /[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}\.[A-Za-z]{2}/g,
    maxLength: 131,
    requires: "@",
    charset: charSet("A-Za-z0-9._%+@-"),
    tail: { chars: charSet("A-Za-z0-9.-"), end: ALNUM },
  },
  phone: {
    id: "pii.phone",
    // International numbers need a leading "+" (8–15 digits, E.164); North American ones need separators, so
    // bare 10-digit ids and dates are left alone.
    pattern:
      /(?<![\w+])(?:\+\d{1,3}(?:[ .-]?(?:\(\d{1,4}\)|\d{1,4})){2,5}|(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4})(?!\d)/g,
    maxLength: 39,
    charset: charSet("0-9 .()+-"),
    first: charSet("0-9(+"),
    validate: longestValidPrefix((s) => {
      const n = countDigits(s);
      return s.startsWith("+") ? n >= 8 && n <= 15 : n === 10;
    }, 10),
  },
  credit_card: {
    id: "pii.credit_card",
    pattern: /(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)/g,
    maxLength: 37,
    charset: charSet("0-9 -"),
    first: charSet("0-9"),
    validate: longestValidPrefix((s) => {
      const digits = s.replace(/[ -]/g, "");
      // Luhn accepts runs of zeros; no card number is one repeated digit. An 18-digit number shaped like a resident
      // ID (province, birth date) is a mistyped ID, not a card: a tenth of them pass Luhn by chance.
      return (
        digits.length >= 13 &&
        digits.length <= 19 &&
        !/^(\d)\1*$/.test(digits) &&
        !ID_SHAPE.test(digits) &&
        plausibleIssuer(digits) &&
        luhnValid(digits)
      );
    }, 13),
  },
  us_ssn: {
    id: "pii.us_ssn",
    pattern: /(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])/g,
    maxLength: 11,
    charset: charSet("0-9-"),
    first: charSet("0-9"),
  },
  iban: {
    id: "pii.iban",
    pattern: /\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b/g,
    maxLength: 64,
    charset: charSet("A-Z0-9 "),
    first: charSet("A-Z"),
    validate: longestValidPrefix(ibanValid, 15),
  },
};

/** Upper bound for the length of an operator pattern whose length cannot be inferred (overridable per pattern). */
export const DEFAULT_PATTERN_MAX_LENGTH = 100;

/**
 * An upper bound on the match length of an operator regex, or undefined when it has quantifiers or
 * back-references (then the operator's `max_length` applies). Without those, every atom reads at most one
 * character (two UTF-16 units with the `u` flag), so twice the source length bounds it.
 */
export function inferMaxLength(source: string): number | undefined {
  const stripped = source.replace(/\\[^1-9k]/g, "").replace(/\(\?(?:<?[=!]|:)/g, "");
  if (/[*+?{]|\\[1-9k]/.test(stripped)) return undefined;
  return source.length * 2;
}

/** Builds an operator rule (`pattern.<id>`). Throws SyntaxError when the regex does not compile. */
export function operatorRule(options: {
  id: string;
  pattern: string;
  action: RuleAction;
  flags: string;
  maxLength: number | undefined;
}): Rule {
  const pattern = new RegExp(options.pattern, `g${options.flags}`);
  return {
    id: `pattern.${options.id}`,
    action: options.action,
    pattern,
    maxLength: options.maxLength ?? inferMaxLength(options.pattern) ?? DEFAULT_PATTERN_MAX_LENGTH,
  };
}
