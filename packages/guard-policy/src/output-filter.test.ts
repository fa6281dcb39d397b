import { describe, expect, it } from "vitest";
import { OutputFilter } from "./output-filter.js";
import { type CompiledPolicy, parseGuardSection } from "./policy.js";
import { placeholder } from "./redactor.js";
import { PII, SECRETS } from "./samples.test-helpers.js";

function policy(raw: unknown = {}): CompiledPolicy {
  const r = parseGuardSection(raw);
  if (!r.success) throw new Error(r.problems.join("\n"));
  return r.policies.default;
}

describe("OutputFilter", () => {
  it("keeps choices apart and redacts a secret split across fragments of one choice", () => {
    const key = SECRETS["secret.aws_access_key"]!;
    const f = new OutputFilter(policy());
    const out = [
      f.text(0, `id ${key.slice(0, 9)}`),
      f.text(1, "other choice AKIA"),
      f.text(0, `${key.slice(9)} ok `),
      f.flush(0),
      ...f.end(),
    ].filter((x) => x !== undefined);
    const byIndex = (i: number) =>
      out
        .filter((r) => r.index === i)
        .map((r) => r.text)
        .join("");
    expect(byIndex(0)).toBe(`id ${placeholder("secret.aws_access_key")} ok `);
    expect(byIndex(1)).toBe("other choice AKIA");
    expect(out.find((r) => r.ruleIds.length > 0)?.ruleIds).toEqual(["secret.aws_access_key"]);
    expect(f.redactedRuleIds).toEqual(["secret.aws_access_key"]);
  });

  it("always redacts secrets in output even when input secrets are off", () => {
    const f = new OutputFilter(policy({ secrets: { action: "off" } }));
    const first = f.text(0, `${SECRETS["secret.github"]} `);
    expect(first?.ruleIds).toEqual(["secret.github"]);
    expect(
      (first?.text ?? "") +
        f
          .end()
          .map((r) => r.text)
          .join(""),
    ).toBe(`${placeholder("secret.github")} `);
  });

  it("stops on an output block pattern and releases nothing after", () => {
    const f = new OutputFilter(policy({ blocked_patterns: [{ id: "x", pattern: "forbidden" }] }));
    f.text(0, "this is forb");
    const r = f.text(0, "idden text and then a lot more text to pass the window");
    expect(r).toEqual({ index: 0, slot: "content", text: "", ruleIds: ["pattern.x"], blocked: true, flushed: false });
    expect(f.blockedBy).toBe("pattern.x");
    expect(f.text(0, "more")).toBeUndefined();
    expect(f.end()).toEqual([]);
    expect(f.flush(0)).toBeUndefined();
  });

  it("answers every flush exactly once, even with nothing held or for an unseen index", () => {
    const f = new OutputFilter(policy());
    expect(f.text(0, "hello ")?.text).toBe("hello ");
    expect(f.flush(0)).toEqual({ index: 0, slot: "content", text: "", ruleIds: [], blocked: false, flushed: true });
    expect(f.flush(3)).toEqual({ index: 3, slot: "content", text: "", ruleIds: [], blocked: false, flushed: true });
    expect(f.text(1, "partial sk-")?.text).toBe("partial ");
    expect(f.flush(1)).toEqual({ index: 1, slot: "content", text: "sk-", ruleIds: [], blocked: false, flushed: true });
    f.text(2, "tail word");
    expect(f.end()).toEqual([{ index: 2, slot: "content", text: "word", ruleIds: [], blocked: false, flushed: false }]);
  });

  it("redacts each slot of a choice on its own, a secret split across tool-argument fragments included", () => {
    const key = SECRETS["secret.openai"]!;
    const f = new OutputFilter(policy());
    const out = [
      f.text(0, "Calling the tool. "),
      f.text(0, `{"key":"${key.slice(0, 10)}`, "tool:0"),
      f.text(0, "Sorry, I can't share ", "refusal"),
      f.text(0, `${key.slice(10)}","to":"`, "tool:0"),
      f.text(0, `${PII["pii.email"]}"}`, "tool:1"),
      f.text(0, `${PII["pii.cn_mobile"]}.`, "refusal"),
      ...f.flushChoice(0),
    ].filter((x) => x !== undefined);
    const bySlot = (slot: string) =>
      out
        .filter((r) => r.slot === slot)
        .map((r) => r.text)
        .join("");
    expect(bySlot("content")).toBe("Calling the tool. ");
    expect(bySlot("tool:0")).toBe(`{"key":"${placeholder("secret.openai")}","to":"`);
    expect(bySlot("tool:1")).toBe(`${placeholder("pii.email")}"}`);
    expect(bySlot("refusal")).toBe(`Sorry, I can't share ${placeholder("pii.cn_mobile")}.`);
    expect(f.redactedRuleIds).toEqual(["pii.cn_mobile", "pii.email", "secret.openai"]);
  });

  it("flushes a choice's content first, then its other slots in the order first written, each exactly once", () => {
    const f = new OutputFilter(policy());
    f.text(0, "args sk-", "tool:2");
    f.text(0, "no sk-", "refusal");
    expect(f.flushChoice(0)).toEqual([
      { index: 0, slot: "content", text: "", ruleIds: [], blocked: false, flushed: true },
      { index: 0, slot: "tool:2", text: "sk-", ruleIds: [], blocked: false, flushed: true },
      { index: 0, slot: "refusal", text: "sk-", ruleIds: [], blocked: false, flushed: true },
    ]);
    expect(f.flushChoice(0)).toEqual([
      { index: 0, slot: "content", text: "", ruleIds: [], blocked: false, flushed: true },
    ]);
  });

  it("stops the whole output on a block pattern in tool arguments", () => {
    const f = new OutputFilter(policy({ blocked_patterns: [{ id: "x", pattern: "forbidden" }] }));
    f.text(0, "fine text ");
    f.text(0, '{"q":"forb', "tool:0");
    const r = f.text(0, 'idden"}', "tool:0") ?? f.flushChoice(0).at(-1);
    expect(r).toEqual({ index: 0, slot: "tool:0", text: "", ruleIds: ["pattern.x"], blocked: true, flushed: false });
    expect(f.blockedBy).toBe("pattern.x");
    expect(f.text(0, "more")).toBeUndefined();
    expect(f.flushChoice(0)).toEqual([]);
  });
});
