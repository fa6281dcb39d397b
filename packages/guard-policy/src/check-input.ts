import { estimateTextTokens, TOKENS_PER_IMAGE, TOKENS_PER_MESSAGE, TOKENS_PER_REPLY } from "@tokenmesh/tokens";
import { detectInjection } from "./injection.js";
import type { CompiledPolicy } from "./policy.js";
import { redactText } from "./redactor.js";
import type { TextCheckMemo, TextFindings } from "./text-memo.js";

/** Who wrote a message; injection checks skip the operator's own roles (system, developer). */
export type MessageRole = "system" | "developer" | "user" | "assistant" | "tool" | "unknown";

/** A chat message as the guard sees it: its text slots (content, text parts, tool-call arguments) and images. */
export interface InputMessage {
  role: MessageRole;
  texts: readonly string[];
  images: number;
}

export type Verdict = "allow" | "redact" | "block";

export interface InputDecision {
  verdict: Verdict;
  /** Every rule that matched, sorted and without repeats (block and redact rules alike). */
  ruleIds: string[];
  /** One entry per match, for hit counters. */
  hits: string[];
  /** Names rules and numbers only, never matched text. Empty when allowed. */
  reason: string;
  inputTokens: number;
  /** For "redact": each message's texts rewritten, same shape as the input. Otherwise the input texts. */
  texts: string[][];
}

/** Rule id of the input length limit. */
export const MAX_TOKENS_RULE = "length.max_input_tokens";

/**
 * The mesh's token estimate (@tokenmesh/tokens) over a message's text slots and images, so the guard's length
 * limit counts what the gateway's rate limits and budget holds count.
 */
export function estimateInputTokens(messages: readonly InputMessage[]): number {
  let n = TOKENS_PER_REPLY;
  for (const m of messages) {
    n += TOKENS_PER_MESSAGE + m.images * TOKENS_PER_IMAGE;
    for (const t of m.texts) n += estimateTextTokens(t);
  }
  return n;
}

const OPERATOR_ROLES: ReadonlySet<MessageRole> = new Set(["system", "developer"]);

/** Where checkInput may remember per-text findings, and the tenant they belong to (see {@link TextCheckMemo}). */
export interface CheckInputMemo {
  memo: TextCheckMemo;
  scope: string;
}

function textFindings(policy: CompiledPolicy, operator: boolean, text: string): TextFindings {
  const injection = operator ? [] : detectInjection(policy.injection, text);
  const r = redactText(policy.inputRules, text);
  return { injection, redacted: r.hits.length === 0 ? undefined : { text: r.text, hits: r.hits } };
}

/**
 * Checks a request's messages against a policy: length limit, prompt injection (non-operator roles), and the
 * secret/PII/operator rules in every text. A block anywhere wins over redactions; redactions rewrite every
 * text slot they touch. With `memo`, texts seen before in the same scope are not scanned again.
 */
export function checkInput(
  policy: CompiledPolicy,
  messages: readonly InputMessage[],
  memo?: CheckInputMemo,
): InputDecision {
  const inputTokens = estimateInputTokens(messages);
  const blockIds = new Set<string>();
  const redactIds = new Set<string>();
  const hits: string[] = [];
  if (inputTokens > policy.maxInputTokens) {
    blockIds.add(MAX_TOKENS_RULE);
    hits.push(MAX_TOKENS_RULE);
  }
  let blockRules: Set<string> | undefined;
  let changed = false;
  const texts = messages.map((m) =>
    m.texts.map((text) => {
      const operator = OPERATOR_ROLES.has(m.role);
      const found =
        memo === undefined
          ? textFindings(policy, operator, text)
          : memo.memo.findings(policy, memo.scope, operator, text, () => textFindings(policy, operator, text));
      for (const id of found.injection) {
        blockIds.add(id);
        hits.push(id);
      }
      if (found.redacted === undefined) return text;
      changed = true;
      blockRules ??= new Set(policy.inputRules.filter((r) => r.action === "block").map((r) => r.id));
      for (const id of found.redacted.hits) {
        hits.push(id);
        (blockRules.has(id) ? blockIds : redactIds).add(id);
      }
      return found.redacted.text;
    }),
  );
  const ruleIds = [...new Set([...blockIds, ...redactIds])].sort();
  if (blockIds.size > 0) {
    const why = [...blockIds]
      .sort()
      .map((id) => (id === MAX_TOKENS_RULE ? `${id} (~${inputTokens} > ${policy.maxInputTokens} tokens)` : id));
    return {
      verdict: "block",
      ruleIds,
      hits,
      reason: `blocked by guard policy: ${why.join(", ")}`,
      inputTokens,
      texts: messages.map((m) => [...m.texts]),
    };
  }
  if (changed) {
    return { verdict: "redact", ruleIds, hits, reason: `redacted: ${ruleIds.join(", ")}`, inputTokens, texts };
  }
  return { verdict: "allow", ruleIds: [], hits: [], reason: "", inputTokens, texts };
}
