/**
 * `@tokenmesh/guard-policy`: the guard's deterministic tier and its one policy format, shared by the guard
 * service and the gateway (which runs it in-process). Pure: no I/O, no clocks, no telemetry.
 *
 * - policy: the catalog's `guard:` section (validated, compiled) and which policy a request gets;
 * - checkInput: length limit, prompt-injection heuristics, secret/PII/operator rules over a request's messages
 *   (detectInjection: the injection families alone, for one text);
 * - OutputFilter / StreamRedactor: output redaction, streamed with a bounded holdback window, or whole texts;
 * - the deep tier's settings and category vocabularies (the checks themselves run in the guard service).
 */
export {
  type CheckInputMemo,
  checkInput,
  estimateInputTokens,
  type InputDecision,
  type InputMessage,
  MAX_TOKENS_RULE,
  type MessageRole,
  type Verdict,
} from "./check-input.js";
export { decisionMessageId, type GuardDecisionRecord } from "./decision.js";
export { LLAMA_GUARD_CATEGORIES, SHIELDGEMMA_HARMS, type ShieldGemmaHarm } from "./hazards.js";
export { BASE64_RULE, detectInjection, type InjectionRule } from "./injection.js";
export { messageTexts, type SlottedMessage, withMessageTexts } from "./messages.js";
export { OutputFilter, type OutputRelease, type OutputSlot } from "./output-filter.js";
export {
  type CompiledPolicy,
  compileGuardSection,
  type DeepPolicy,
  type DeepSource,
  GuardPolicyError,
  type ParsePolicyResult,
  type PolicySet,
  parseGuardSection,
  resolvePolicy,
  selectPolicy,
} from "./policy.js";
export { placeholder, type Release, redactText, StreamRedactor } from "./redactor.js";
export type { RuleAction } from "./rules.js";
export { TextCheckMemo, type TextCheckMemoOptions, type TextFindings } from "./text-memo.js";
