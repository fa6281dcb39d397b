import type { DeepPolicy, DeepSource } from "@tokenmesh/guard-policy";
import { raceAbort } from "@tokenmesh/runtime";
import type { DeepSubject, ModelVerdict } from "./conversation.js";
import { buildLlamaGuardPrompt, parseLlamaGuardVerdict } from "./llama-guard.js";
import { parseModerationResponse } from "./moderation.js";
import { buildShieldGemmaPrompt, parseShieldGemmaVerdict } from "./shieldgemma.js";

/** The calls a deep check makes; adapters implement them (the router's Route RPC, an HTTP moderation client). */
export interface DeepCheckPorts {
  /** The text a catalog model answers to one user message (greedy, short). Must honour `signal`. */
  complete(model: string, prompt: string, signal: AbortSignal): Promise<string>;
  /** The JSON body a moderation upstream answers for these texts. Must honour `signal`. */
  moderate(
    source: Extract<DeepSource, { kind: "moderation" }>,
    inputs: string[],
    signal: AbortSignal,
  ): Promise<unknown>;
}

/** How a deep check ended: a verdict, or no verdict (then `on_error` decided), or nothing to check. */
export type DeepOutcome = "safe" | "unsafe" | "timeout" | "error" | "skipped";

export interface DeepVerdict {
  outcome: DeepOutcome;
  /** What the policy makes of the outcome; a caller enforces it unless `shadow`. */
  action: "allow" | "block";
  /** The policy's mode is shadow: record, never enforce. */
  shadow: boolean;
  /** `deep.<category>` (or `deep.unsafe` when none was named), `deep.timeout`, `deep.error`; empty when safe. */
  ruleIds: string[];
  categories: string[];
  /** Names rules and outcomes only, never the judged text. */
  reason: string;
  /** The failure behind an "error" outcome, for the log. */
  error?: unknown;
}

/** Rule id of a deep check that ran out of time, and of one that failed. */
export const DEEP_TIMEOUT_RULE = "deep.timeout";
export const DEEP_ERROR_RULE = "deep.error";

/** Texts a moderation upstream is asked about: every user turn for input, the answer for output. */
function moderationInputs(subject: DeepSubject): string[] {
  if (subject.stage === "output") return [subject.response];
  const texts = subject.conversation.filter((t) => t.role === "user" && t.text !== "").map((t) => t.text);
  return texts.length > 0 ? texts : [""];
}

async function ask(deep: DeepPolicy, subject: DeepSubject, ports: DeepCheckPorts, signal: AbortSignal) {
  const s = deep.source;
  if (s.kind === "moderation") {
    return parseModerationResponse(await ports.moderate(s, moderationInputs(subject), signal), deep.categories);
  }
  if (s.format === "shieldgemma") {
    const answer = await ports.complete(s.model, buildShieldGemmaPrompt(subject, deep.categories), signal);
    return parseShieldGemmaVerdict(answer, deep.categories);
  }
  const answer = await ports.complete(s.model, buildLlamaGuardPrompt(subject, deep.categories), signal);
  const v = parseLlamaGuardVerdict(answer);
  // Categories outside a configured subset do not count (the model was not asked about them).
  if (!v.unsafe || deep.categories === undefined || v.categories.length === 0) return v;
  const counted = v.categories.filter((c) => deep.categories!.includes(c));
  return { unsafe: counted.length > 0, categories: counted };
}

/**
 * Runs a policy's deep tier on one subject within `timeout_ms`: the verdict, or `on_error` when the call times out,
 * fails, or answers something that is not a verdict. Never throws for those; rejects only when `signal` (the
 * caller) aborts. A stage the policy does not check is "skipped" and allowed without a call.
 */
export async function runDeepCheck(
  deep: DeepPolicy,
  subject: DeepSubject,
  ports: DeepCheckPorts,
  signal: AbortSignal,
): Promise<DeepVerdict> {
  const shadow = deep.mode === "shadow";
  if (subject.stage === "input" ? !deep.input : !deep.output) {
    return { outcome: "skipped", action: "allow", shadow, ruleIds: [], categories: [], reason: "" };
  }
  const timeout = AbortSignal.timeout(deep.timeoutMs);
  const both = AbortSignal.any([signal, timeout]);
  let verdict: ModelVerdict;
  try {
    verdict = await raceAbort(ask(deep, subject, ports, both), both);
  } catch (err) {
    if (signal.aborted) throw err;
    const outcome = timeout.aborted ? "timeout" : "error";
    const rule = outcome === "timeout" ? DEEP_TIMEOUT_RULE : DEEP_ERROR_RULE;
    return {
      outcome,
      action: deep.onError,
      shadow,
      ruleIds: [rule],
      categories: [],
      reason: `deep check ${outcome === "timeout" ? `timed out after ${deep.timeoutMs} ms` : "failed"}; on_error: ${deep.onError}`,
      error: err,
    };
  }
  if (!verdict.unsafe) return { outcome: "safe", action: "allow", shadow, ruleIds: [], categories: [], reason: "" };
  const ruleIds = verdict.categories.length > 0 ? verdict.categories.map((c) => `deep.${c}`) : ["deep.unsafe"];
  return {
    outcome: "unsafe",
    action: "block",
    shadow,
    ruleIds,
    categories: verdict.categories,
    reason: `${shadow ? "would be blocked" : "blocked"} by the guard's deep check: ${ruleIds.join(", ")}`,
  };
}
