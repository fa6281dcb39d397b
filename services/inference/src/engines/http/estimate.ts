import type { ChatMessage } from "@tokenmesh/proto/common/v1/chat";

/** Tokens a message costs beyond its text (role markers, separators), as OpenAI's chat format roughly does. */
const PER_MESSAGE = 4;
/** A flat guess per image: providers charge by size, which we do not know without decoding it. */
const PER_IMAGE = 85;

/** Rough token count of a text: one token per four characters, the usual figure for English BPE vocabularies. */
export function estimateTextTokens(text: string): number {
  return Math.ceil(text.length / 4);
}

/**
 * Estimates the prompt tokens of a conversation (chars / 4 plus a per-message and per-image allowance). Used where
 * the provider's tokenizer is not available; callers must treat it as an estimate (`exact: false`).
 */
export function estimateMessageTokens(messages: readonly ChatMessage[]): number {
  let tokens = 0;
  for (const m of messages) {
    let chars = m.content.length + m.name.length;
    for (const p of m.parts) {
      if (p.text !== undefined) chars += p.text.length;
      else if (p.imageUrl !== undefined) tokens += PER_IMAGE;
    }
    for (const tc of m.toolCalls) chars += (tc.function?.name.length ?? 0) + (tc.function?.arguments.length ?? 0);
    tokens += PER_MESSAGE + Math.ceil(chars / 4);
  }
  return tokens;
}
