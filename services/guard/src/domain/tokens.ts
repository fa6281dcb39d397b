/**
 * Segments of text that BPE tokenizers (cl100k/o200k-like) treat alike: ASCII letter runs, digit runs,
 * whitespace runs, single ASCII symbols, runs of other letters (Latin-1 to Cyrillic), and any other code point.
 */
const SEGMENT = /([A-Za-z]+)|([0-9]+)|(\s+)|([\x21-\x7e])|([\u00c0-\u052f]+)|[\s\S]/gu;

/**
 * Estimates the tokens of a text without a tokenizer, in one regex pass: a word is a token per 6 letters
 * (common English words are one token), digits go in threes, a single space joins the next word, punctuation
 * is a token each, accented/Cyrillic letters a token per 3, and other code points (CJK, emoji) one each.
 * Closer than chars/4 for prose (which over-counts short words); an estimate for limits, never for billing.
 */
export function estimateTextTokens(text: string): number {
  let n = 0;
  SEGMENT.lastIndex = 0;
  for (let m = SEGMENT.exec(text); m !== null; m = SEGMENT.exec(text)) {
    if (m[1] !== undefined) n += Math.ceil(m[1].length / 6);
    else if (m[2] !== undefined) n += Math.ceil(m[2].length / 3);
    else if (m[3] !== undefined) n += m[3].length === 1 ? 0 : 1 + Math.floor(m[3].length / 8);
    else if (m[4] !== undefined) n += 1;
    else if (m[5] !== undefined) n += Math.ceil(m[5].length / 3);
    else n += 1;
  }
  return n;
}

/** Chat-format overhead per message (role and separators) and for priming the reply, as OpenAI counts them. */
const PER_MESSAGE = 3;
const PER_REPLY = 3;
/** An image's floor cost (OpenAI's low-detail price); the guard does not decode images. */
const PER_IMAGE = 85;

/** Estimates the input tokens of a chat request from its messages' texts and image count. */
export function estimateChatTokens(messages: readonly { texts: readonly string[]; images: number }[]): number {
  let n = PER_REPLY;
  for (const m of messages) {
    n += PER_MESSAGE + m.images * PER_IMAGE;
    for (const t of m.texts) n += estimateTextTokens(t);
  }
  return n;
}
