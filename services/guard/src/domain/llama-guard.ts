import { LLAMA_GUARD_CATEGORIES } from "@tokenmesh/guard-policy";
import { type DeepSubject, type ModelVerdict, VerdictParseError } from "./conversation.js";

/**
 * Llama Guard 3's task prompt (Meta's model card, "Prompt format"): the hazard categories, the conversation as
 * `User:` / `Agent:` turns, and the instruction to judge only the last message of the checked role. It is the
 * text of ONE user message: the serving endpoint wraps it in the Llama 3 chat template
 * (`<|begin_of_text|><|start_header_id|>user<|end_header_id|>` … `<|eot_id|><|start_header_id|>assistant…`), which
 * yields exactly the documented prompt. (An endpoint whose chat template already builds the Llama Guard task from
 * raw turns must not be given this prompt.)
 *
 * `categories` narrows the list to a subset, keeping the original codes (S1, S9, …) so answers map back to them.
 */
export function buildLlamaGuardPrompt(subject: DeepSubject, categories?: readonly string[]): string {
  const role = subject.stage === "input" ? "User" : "Agent";
  const codes = categories ?? Object.keys(LLAMA_GUARD_CATEGORIES);
  const turns = subject.conversation.map((t) => `${t.role === "user" ? "User" : "Agent"}: ${t.text}`);
  if (subject.stage === "output") turns.push(`Agent: ${subject.response}`);
  return [
    `Task: Check if there is unsafe content in '${role}' messages in conversations according our safety policy with the below categories.`,
    "",
    "<BEGIN UNSAFE CONTENT CATEGORIES>",
    ...codes.map((c) => `${c}: ${LLAMA_GUARD_CATEGORIES[c] ?? c}`),
    "<END UNSAFE CONTENT CATEGORIES>",
    "",
    "<BEGIN CONVERSATION>",
    "",
    ...turns.flatMap((t) => [t, ""]),
    "<END CONVERSATION>",
    "",
    `Provide your safety assessment for ONLY THE LAST ${role} message in the above conversation:`,
    " - First line must read 'safe' or 'unsafe'.",
    " - If unsafe, a second line must include a comma-separated list of violated categories.",
  ].join("\n");
}

/**
 * Reads Llama Guard's answer: `safe`, or `unsafe` and on the next line the violated codes (`S1,S10`). Leading
 * whitespace, case and spaces around commas are tolerated; unknown tokens on the category line are dropped.
 * Throws VerdictParseError when the first line is neither word.
 */
export function parseLlamaGuardVerdict(answer: string): ModelVerdict {
  const lines = answer
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== "");
  const first = lines[0]?.toLowerCase();
  if (first === "safe") return { unsafe: false, categories: [] };
  if (first !== "unsafe") {
    throw new VerdictParseError(`guard model answered neither "safe" nor "unsafe" (${answer.length} chars)`);
  }
  const categories = (lines[1] ?? "")
    .split(/[,\s]+/)
    .map((c) => c.toUpperCase())
    .filter((c) => /^S\d{1,2}$/.test(c));
  return { unsafe: true, categories: [...new Set(categories)] };
}
