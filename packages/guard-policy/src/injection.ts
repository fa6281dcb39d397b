/** A prompt-injection detector: a case-insensitive regex over normalised text. */
export interface InjectionRule {
  /** `injection.<name>`. */
  readonly id: string;
  readonly pattern: RegExp;
}

const FILLER = String.raw`(?:\s+(?:all|any|of|the|your|my|these|those|every|previous|prior|above|earlier|system))*`;

/**
 * Common prompt-injection phrasings. They aim at the well-known forms ("ignore all previous instructions",
 * "reveal your system prompt", DAN, chat-template tokens smuggled into user text); they are a cheap first line,
 * not a classifier. Checked only in user, assistant and tool messages: an operator's system prompt saying
 * "never reveal your system prompt" must not block its own requests.
 */
export const INJECTION_RULES: readonly InjectionRule[] = [
  {
    id: "injection.ignore_instructions",
    pattern: new RegExp(
      String.raw`\b(?:ignore|disregard|forget|override|bypass|skip)${FILLER}\s+(?:previous|prior|above|earlier|preceding|foregoing|original|initial|system|developer)\s+(?:\w+\s+){0,2}?(?:instructions?|prompts?|rules|directions|directives|guidelines|guardrails|constraints|commands|messages?)\b` +
        String.raw`|\b(?:ignore|disregard|forget)\s+(?:everything|all)\s+(?:above|before|prior|previously|you(?:'ve|\s+have)\s+been\s+told)\b`,
      "i",
    ),
  },
  {
    id: "injection.reveal_system_prompt",
    pattern: new RegExp(
      String.raw`\b(?:reveal|show|print|repeat|output|display|leak|dump|recite|tell\s+me|give\s+me|what\s+(?:is|are|was|were))\s+(?:me\s+|us\s+)?(?:your|the)\s+(?:(?:full|entire|exact|original|hidden|secret|initial|complete|verbatim)\s+)*(?:system\s+(?:prompt|message|instructions)|initial\s+(?:prompt|instructions)|hidden\s+(?:prompt|instructions)|pre-?prompt)\b` +
        String.raw`|\brepeat\s+(?:the\s+|all\s+(?:the\s+)?)?(?:words|text|everything)\s+above\b`,
      "i",
    ),
  },
  {
    id: "injection.jailbreak",
    pattern: new RegExp(
      String.raw`\b(?:you\s+are\s+now|act\s+as|pretend\s+(?:to\s+be|you\s+are)|roleplay\s+as)\s+(?:an?\s+)?(?:DAN|unrestricted|unfiltered|uncensored|jailbroken)\b` +
        String.raw`|\bdo\s+anything\s+now\b` +
        String.raw`|\b(?:developer|god|jailbreak|DAN)\s+mode\s+(?:is\s+)?(?:enabled|activated|on)\b` +
        String.raw`|\b(?:enable|activate|enter|switch\s+to)\s+(?:developer|god|jailbreak|DAN)\s+mode\b`,
      "i",
    ),
  },
  {
    id: "injection.disable_safety",
    pattern: new RegExp(
      String.raw`\byou\s+(?:have|are\s+under|are\s+bound\s+by)\s+no\s+(?:\w+\s+)?(?:restrictions|limitations|rules|filters|guidelines|polic(?:y|ies))\b` +
        String.raw`|\b(?:bypass|disable|turn\s+off|ignore|remove)\s+(?:(?:your|all|the|any)\s+)*(?:safety|content|ethical|moderation)\s+(?:filters?|guidelines|polic(?:y|ies)|restrictions|guardrails|rules)\b`,
      "i",
    ),
  },
  {
    id: "injection.chat_template_tokens",
    pattern: /<\|(?:im_start|im_end|system|endoftext|start_header_id|end_header_id|eot_id)\|>|\[\/?INST\]|<<\/?SYS>>/i,
  },
];

/** Zero-width and invisible formatting characters used to split trigger words ("ig\u200Bnore"). */
const INVISIBLE = /\u034F|[\u00AD\u061C\u115F\u1160\u17B4\u17B5\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\uFEFF]/g;

/** Folds compatibility forms (full-width letters, ligatures) and removes invisible characters. */
export function normalizeForInjection(text: string): string {
  return text.normalize("NFKC").replace(INVISIBLE, "");
}

/** Ids of the rules that match `text` (normalised here), in rule order. */
export function detectInjection(rules: readonly InjectionRule[], text: string): string[] {
  if (rules.length === 0 || text.length === 0) return [];
  const normalized = normalizeForInjection(text);
  const ids: string[] = [];
  for (const r of rules) if (r.pattern.test(normalized)) ids.push(r.id);
  return ids;
}
