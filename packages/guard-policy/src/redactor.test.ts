import { describe, expect, it } from "vitest";
import { compilePolicy, PolicySchema } from "./policy.js";
import { placeholder, redactText, StreamRedactor } from "./redactor.js";
import { operatorRule } from "./rules.js";
import { PII, SECRETS } from "./samples.test-helpers.js";

const outputRules = compilePolicy("", PolicySchema.parse({})).outputRules;

function stream(fragments: string[], rules = outputRules): { text: string; pieces: string[]; hits: string[] } {
  const r = new StreamRedactor(rules, { stopOnBlock: true });
  const pieces: string[] = [];
  const hits: string[] = [];
  for (const f of fragments) {
    const out = r.push(f);
    pieces.push(out.text);
    hits.push(...out.hits);
  }
  const end = r.flush();
  pieces.push(end.text);
  hits.push(...end.hits);
  return { text: pieces.join(""), pieces, hits };
}

const ALL = { ...SECRETS, ...PII };

describe("StreamRedactor", () => {
  for (const [id, value] of Object.entries(ALL)) {
    const text = `Here it is: ${value} — keep it safe.`;
    const expected = `Here it is: ${placeholder(id)} — keep it safe.`;

    it(`catches ${id} split at every possible point`, () => {
      expect(redactText(outputRules, text).text).toBe(expected);
      for (let i = 0; i <= text.length; i++) {
        const out = stream([text.slice(0, i), text.slice(i)]);
        expect(out.text, `split at ${i}`).toBe(expected);
        expect(out.hits).toEqual([id]);
      }
    });

    it(`catches ${id} split at every pair of points`, () => {
      const start = text.indexOf(value);
      for (let i = start; i <= start + value.length; i++) {
        for (let j = i; j <= start + value.length; j += 3) {
          const out = stream([text.slice(0, i), text.slice(i, j), text.slice(j)]);
          expect(out.text, `split at ${i}, ${j}`).toBe(expected);
        }
      }
    });

    it(`catches ${id} streamed one character at a time, releasing none of it`, () => {
      const out = stream([...text]);
      expect(out.text).toBe(expected);
      // No released piece carries even a 4-character slice of the value.
      for (const piece of out.pieces) {
        for (let k = 0; k + 4 <= value.length; k++) {
          const slice = value.slice(k, k + 4);
          if (!/[A-Za-z0-9]{2}/.test(slice)) continue;
          expect(`Here it is: — keep it safe.${placeholder(id)}`.includes(slice) || !piece.includes(slice), slice).toBe(
            true,
          );
        }
      }
    });
  }

  it("gives the one-shot result for mixed text under random fragmenting", () => {
    const text = Object.entries(ALL)
      .map(([id, v], i) => `Item ${i} (${id.length} chars): ${v}, then a word, a number 42 and more text.\n`)
      .join("");
    const expected = redactText(outputRules, text).text;
    for (const v of Object.values(ALL)) expect(expected).not.toContain(v);
    let seed = 7;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    for (let round = 0; round < 50; round++) {
      const fragments: string[] = [];
      for (let i = 0; i < text.length; ) {
        const n = 1 + Math.floor(rand() * 12);
        fragments.push(text.slice(i, i + n));
        i += n;
      }
      expect(stream(fragments).text).toBe(expected);
    }
  });

  it("holds back only the word being written in prose", () => {
    const r = new StreamRedactor(outputRules, { stopOnBlock: true });
    expect(r.push("The quick brown fox ").text).toBe("The quick brown fox ");
    expect(r.push("jum").text).toBe("");
    expect(r.held).toBe(3);
    // "over." could still be the start of an email address.
    expect(r.push("ps over.").text).toBe("jumps ");
    expect(r.flush().text).toBe("over.");
  });

  it("never holds back more than its bound, whatever the text", () => {
    const r = new StreamRedactor(outputRules, { stopOnBlock: true });
    const noise = "aZ9_-".repeat(400) + "1 2 3 4 ".repeat(100) + "AB12 ".repeat(100);
    for (const ch of noise) {
      r.push(ch);
      expect(r.held).toBeLessThanOrEqual(r.maxHoldback);
    }
    expect(r.maxHoldback).toBeLessThanOrEqual(211);
  });

  it("drops a long secret's tail as it arrives instead of holding it", () => {
    const r = new StreamRedactor(outputRules, { stopOnBlock: true });
    const out = [r.push("key sk-"), r.push("AbC123dEf456GhI789jK"), r.push("Lm".repeat(500)), r.push(" done")];
    expect(out.map((o) => o.text).join("") + r.flush().text).toBe(`key ${placeholder("secret.openai")} done`);
    expect(r.held).toBe(0);
  });

  it("stops at a block rule, releasing nothing from the match on", () => {
    const rule = operatorRule({
      id: "no-internal",
      pattern: "corp\\.internal",
      action: "block",
      flags: "",
      maxLength: undefined,
    });
    const r = new StreamRedactor([...outputRules, rule], { stopOnBlock: true });
    const prose = "Documentation for the service lives on the wiki at http://wiki.co";
    const first = r.push(prose);
    // The operator pattern has no character class, so its whole 30-character window is held.
    expect(first.text).toBe(prose.slice(0, prose.length - 30));
    const second = r.push("rp.internal/x, which is an internal host.");
    expect(second.blockedBy).toBe("pattern.no-internal");
    expect(second.hits).toEqual(["pattern.no-internal"]);
    expect(first.text + second.text).toBe(prose.slice(0, -2));
    expect(r.push("more").text).toBe("");
    expect(r.flush().text).toBe("");
  });

  it("catches a case-insensitive operator pattern split across fragments", () => {
    const rule = operatorRule({
      id: "codename",
      pattern: "project\\s+falcon",
      action: "redact",
      flags: "i",
      maxLength: 40,
    });
    const text = "We discussed Project   FALCON yesterday.";
    for (let i = 0; i <= text.length; i++) {
      expect(stream([text.slice(0, i), text.slice(i)], [rule]).text).toBe(
        `We discussed ${placeholder("pattern.codename")} yesterday.`,
      );
    }
  });

  it("is reusable after flush", () => {
    const r = new StreamRedactor(outputRules, { stopOnBlock: true });
    r.push("mail a@b.co");
    expect(r.flush().text).toBe(placeholder("pii.email"));
    expect(r.push("plain ").text).toBe("plain ");
  });
});
