import { describe, expect, it } from "vitest";
import { detectInjection } from "./injection.js";
import { INJECTION_SET, PII_SET } from "./labelled-set.test-helpers.js";
import { compilePolicy, PolicySchema } from "./policy.js";
import { redactText } from "./redactor.js";

/** The targets issue 15 sets for the deterministic tier on this set. */
const MIN_RECALL = 0.9;
const MIN_PRECISION = 0.95;

const policy = compilePolicy("", PolicySchema.parse({}));

interface Score {
  tp: number;
  fp: number;
  fn: number;
  tn: number;
  misses: string[];
}

const precision = (s: Score) => s.tp / (s.tp + s.fp);
const recall = (s: Score) => s.tp / (s.tp + s.fn);

function scoreInjection(): Score {
  const s: Score = { tp: 0, fp: 0, fn: 0, tn: 0, misses: [] };
  for (const [text, attack] of INJECTION_SET) {
    const flagged = detectInjection(policy.injection, text).length > 0;
    if (attack && flagged) s.tp++;
    else if (attack) {
      s.fn++;
      s.misses.push(`missed attack: ${JSON.stringify(text)}`);
    } else if (flagged) {
      s.fp++;
      s.misses.push(`flagged benign: ${JSON.stringify(text)} (${detectInjection(policy.injection, text).join(", ")})`);
    } else s.tn++;
  }
  return s;
}

/** A PII row counts as found only when its own kind is reported; any PII hit on a look-alike is a false positive. */
function scorePii(): Score {
  const s: Score = { tp: 0, fp: 0, fn: 0, tn: 0, misses: [] };
  for (const [text, kind] of PII_SET) {
    const hits = redactText(policy.inputRules, text).hits.filter((id) => id.startsWith("pii."));
    if (kind !== null && hits.includes(kind)) s.tp++;
    else if (kind !== null) {
      s.fn++;
      s.misses.push(`missed ${kind}: ${JSON.stringify(text)} (got ${hits.join(", ") || "nothing"})`);
    }
    if (kind === null && hits.length > 0) {
      s.fp++;
      s.misses.push(`flagged look-alike: ${JSON.stringify(text)} (${hits.join(", ")})`);
    } else if (kind === null) s.tn++;
    // A right kind plus a wrong extra one on the same text is a false positive too.
    if (kind !== null && hits.some((h) => h !== kind)) {
      s.fp++;
      s.misses.push(`extra kind on ${JSON.stringify(text)}: ${hits.join(", ")}`);
    }
  }
  return s;
}

function row(name: string, n: number, s: Score): string {
  const f = (x: number) => x.toFixed(3);
  return `| ${name} | ${n} | ${s.tp + s.fn} | ${s.tn + s.fp} | ${f(precision(s))} | ${f(recall(s))} | ${s.fp} | ${s.fn} |`;
}

describe("the labelled guard set", () => {
  const injection = scoreInjection();
  const pii = scorePii();

  it("has at least 200 labelled inputs, attacks and look-alikes in both languages", () => {
    const all = [...INJECTION_SET.map(([t]) => t), ...PII_SET.map(([t]) => t)];
    expect(all.length).toBeGreaterThanOrEqual(200);
    expect(new Set(all).size).toBe(all.length);
    const cjk = /[\u4e00-\u9fff]/;
    for (const label of [true, false]) {
      expect(INJECTION_SET.filter(([t, a]) => a === label && cjk.test(t)).length).toBeGreaterThanOrEqual(20);
      expect(INJECTION_SET.filter(([t, a]) => a === label && !cjk.test(t)).length).toBeGreaterThanOrEqual(20);
    }
    expect(PII_SET.filter(([, k]) => k === null).length).toBeGreaterThanOrEqual(20);
  });

  it(`reaches recall >= ${MIN_RECALL} at precision >= ${MIN_PRECISION} for injection and for PII`, () => {
    const table = [
      "| detector | inputs | positive | negative | precision | recall | false positives | false negatives |",
      "|---|---|---|---|---|---|---|---|",
      row("prompt injection", INJECTION_SET.length, injection),
      row("PII", PII_SET.length, pii),
    ].join("\n");
    console.log(`${table}\n\n${[...injection.misses, ...pii.misses].map((m) => `- ${m}`).join("\n")}`);
    expect(recall(injection), injection.misses.join("\n")).toBeGreaterThanOrEqual(MIN_RECALL);
    expect(precision(injection), injection.misses.join("\n")).toBeGreaterThanOrEqual(MIN_PRECISION);
    expect(recall(pii), pii.misses.join("\n")).toBeGreaterThanOrEqual(MIN_RECALL);
    expect(precision(pii), pii.misses.join("\n")).toBeGreaterThanOrEqual(MIN_PRECISION);
  });
});
