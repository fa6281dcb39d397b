import { compileGuardSection, type DeepPolicy } from "@tokenmesh/guard-policy";
import { describe, expect, it } from "vitest";
import { type DeepCheckPorts, runDeepCheck } from "./deep-check.js";

function deep(raw: Record<string, unknown>): DeepPolicy {
  return compileGuardSection({ deep: raw }).default.deep!;
}

/** Ports answering fixed texts (the model) or bodies (moderation); `never` models a guard that never answers. */
function ports(answer: string | "never" | Error, moderation?: unknown) {
  const prompts: string[] = [];
  const inputs: string[][] = [];
  const p: DeepCheckPorts = {
    complete: (_model, prompt, signal) => {
      prompts.push(prompt);
      if (answer instanceof Error) return Promise.reject(answer);
      if (answer === "never")
        return new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason)));
      return Promise.resolve(answer);
    },
    moderate: async (_source, texts) => {
      inputs.push(texts);
      return moderation;
    },
  };
  return { p, prompts, inputs };
}

const input = { stage: "input" as const, conversation: [{ role: "user" as const, text: "hello" }] };
const signal = new AbortController().signal;

describe("runDeepCheck", () => {
  it("blocks on an unsafe Llama Guard verdict, naming the categories as deep.<code>", async () => {
    const { p, prompts } = ports("unsafe\nS1,S10");
    const v = await runDeepCheck(deep({ model: "lg" }), input, p, signal);
    expect(v).toMatchObject({ outcome: "unsafe", action: "block", shadow: false, ruleIds: ["deep.S1", "deep.S10"] });
    expect(prompts[0]).toContain("User: hello");
  });

  it("allows a safe verdict and reports shadow mode without changing the action", async () => {
    expect(await runDeepCheck(deep({ model: "lg" }), input, ports("safe").p, signal)).toMatchObject({
      outcome: "safe",
      action: "allow",
      ruleIds: [],
    });
    expect(
      await runDeepCheck(deep({ model: "lg", mode: "shadow" }), input, ports("unsafe\nS2").p, signal),
    ).toMatchObject({ outcome: "unsafe", action: "block", shadow: true, ruleIds: ["deep.S2"] });
  });

  it("skips a stage the policy does not check, without a call", async () => {
    const { p, prompts } = ports("unsafe\nS1");
    const v = await runDeepCheck(
      deep({ model: "lg", apply_to: "input" }),
      { ...input, stage: "output", response: "x" },
      p,
      signal,
    );
    expect(v).toMatchObject({ outcome: "skipped", action: "allow" });
    expect(prompts).toEqual([]);
  });

  it("follows on_error on a timeout and on an unreadable answer", async () => {
    const slow = await runDeepCheck(
      deep({ model: "lg", timeout_ms: 20, on_error: "block" }),
      input,
      ports("never").p,
      signal,
    );
    expect(slow).toMatchObject({ outcome: "timeout", action: "block", ruleIds: ["deep.timeout"] });
    const garbled = await runDeepCheck(deep({ model: "lg", on_error: "allow" }), input, ports("sure!").p, signal);
    expect(garbled).toMatchObject({ outcome: "error", action: "allow", ruleIds: ["deep.error"] });
    const failed = await runDeepCheck(
      deep({ model: "lg", on_error: "block" }),
      input,
      ports(new Error("down")).p,
      signal,
    );
    expect(failed).toMatchObject({ outcome: "error", action: "block" });
  });

  it("rejects when the caller aborts instead of applying on_error", async () => {
    const caller = new AbortController();
    const pending = runDeepCheck(deep({ model: "lg", timeout_ms: 60_000 }), input, ports("never").p, caller.signal);
    caller.abort();
    await expect(pending).rejects.toMatchObject({ code: "CANCELLED" });
  });

  it("ignores categories outside a configured subset", async () => {
    const v = await runDeepCheck(deep({ model: "lg", categories: ["S1"] }), input, ports("unsafe\nS5").p, signal);
    expect(v).toMatchObject({ outcome: "safe", action: "allow" });
  });

  it("prompts ShieldGemma and reads its Yes", async () => {
    const { p, prompts } = ports("Yes");
    const v = await runDeepCheck(
      deep({ model: "sg", format: "shieldgemma", categories: ["hate_speech"] }),
      input,
      p,
      signal,
    );
    expect(v.ruleIds).toEqual(["deep.hate_speech"]);
    expect(prompts[0]).toContain("Human Question: hello");
  });

  it("sends every user turn to a moderation upstream for input, the answer for output", async () => {
    const flagged = { results: [{ flagged: true, categories: { violence: true } }] };
    const mod = deep({ moderation: { base_url: "http://127.0.0.1:9/v1" }, apply_to: "both" });
    const a = ports("", flagged);
    const conversation = [
      { role: "user" as const, text: "one" },
      { role: "assistant" as const, text: "two" },
      { role: "user" as const, text: "three" },
    ];
    expect((await runDeepCheck(mod, { stage: "input", conversation }, a.p, signal)).ruleIds).toEqual(["deep.violence"]);
    await runDeepCheck(mod, { stage: "output", conversation, response: "answer" }, a.p, signal);
    expect(a.inputs).toEqual([["one", "three"], ["answer"]]);
  });
});
