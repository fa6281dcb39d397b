/**
 * The one token estimator of the mesh, for where a model's own tokenizer is not at hand: rate-limit and budget
 * holds before a request runs, the guard's length limit, provider calls whose usage never arrived. Every caller
 * marks what it derives from here as an estimate; the provider's or the local tokenizer's count wins when known.
 */

/**
 * Estimates the tokens of a text in one pass over its UTF-16 code units, segmenting it as BPE tokenizers
 * (cl100k/o200k-like) do: a run of ASCII letters is a token per 6 letters (common English words are one token), digits
 * go in threes, a single whitespace character joins the next word (a longer run is 1 + 1 per 8), an ASCII symbol is
 * a token, a run of accented and Cyrillic letters (U+00C0–U+052F) a token per 3, and every other code point (CJK,
 * emoji, controls) one each. Closer than chars/4 for prose (which over-counts short words) and, unlike chars/4, not
 * 3–4× low for Chinese or Japanese. Written as a scanner rather than a regex: it runs on every chunk of every answer
 * (partial-usage estimates), where the regex's match objects were a measurable share of the gateway's CPU.
 */
export function estimateTextTokens(text: string): number {
  let n = 0;
  const len = text.length;
  let i = 0;
  while (i < len) {
    const c = text.charCodeAt(i);
    let j = i + 1;
    if (isAsciiLetter(c)) {
      while (j < len && isAsciiLetter(text.charCodeAt(j))) j++;
      n += Math.ceil((j - i) / 6);
    } else if (isDigit(c)) {
      while (j < len && isDigit(text.charCodeAt(j))) j++;
      n += Math.ceil((j - i) / 3);
    } else if (isSpace(c)) {
      while (j < len && isSpace(text.charCodeAt(j))) j++;
      n += j - i === 1 ? 0 : 1 + Math.floor((j - i) / 8);
    } else if (c >= 0x21 && c <= 0x7e) {
      n += 1;
    } else if (isExtendedLetter(c)) {
      while (j < len && isExtendedLetter(text.charCodeAt(j))) j++;
      n += Math.ceil((j - i) / 3);
    } else {
      // Any other code point: a surrogate pair is one.
      if (c >= 0xd800 && c <= 0xdbff && j < len) {
        const d = text.charCodeAt(j);
        if (d >= 0xdc00 && d <= 0xdfff) j++;
      }
      n += 1;
    }
    i = j;
  }
  return n;
}

function isAsciiLetter(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

function isExtendedLetter(c: number): boolean {
  return c >= 0xc0 && c <= 0x52f;
}

/** JavaScript's `\s`: ASCII whitespace and the Unicode space separators, line/paragraph separators and the BOM. */
function isSpace(c: number): boolean {
  if (c <= 32) return c === 32 || (c >= 9 && c <= 13);
  if (c < 0xa0) return false;
  return (
    c === 0xa0 ||
    c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 ||
    c === 0x2029 ||
    c === 0x202f ||
    c === 0x205f ||
    c === 0x3000 ||
    c === 0xfeff
  );
}

/** Chat-format overhead per message (role and separators) and for priming the reply, as OpenAI counts them. */
export const TOKENS_PER_MESSAGE = 3;
export const TOKENS_PER_REPLY = 3;
/**
 * An image's allowance: OpenAI's high-detail price of a 512×512 image (85 + 4 tiles × 170). Providers charge by
 * size, which is not known without decoding the image, so this leans high: holds are corrected by real usage.
 */
export const TOKENS_PER_IMAGE = 765;

/** The parts of a chat message that cost tokens; proto `ChatMessage` and plain objects both fit. */
export interface TokenizableMessage {
  content?: string;
  name?: string;
  parts?: readonly { text?: string | undefined }[];
  toolCalls?: readonly { function?: { name: string; arguments: string } | undefined }[];
}

/** Estimates the prompt tokens of a conversation: its texts, tool calls, names, images and chat-format overhead. */
export function estimateMessageTokens(messages: readonly TokenizableMessage[]): number {
  let n = TOKENS_PER_REPLY;
  for (const m of messages) {
    n += TOKENS_PER_MESSAGE;
    if (m.content) n += estimateTextTokens(m.content);
    if (m.name) n += 1 + estimateTextTokens(m.name);
    for (const p of m.parts ?? []) n += p.text !== undefined ? estimateTextTokens(p.text) : TOKENS_PER_IMAGE;
    for (const tc of m.toolCalls ?? []) {
      if (tc.function) n += estimateTextTokens(tc.function.name) + estimateTextTokens(tc.function.arguments);
    }
  }
  return n;
}

/**
 * Image allowance of the bound: the most any provider we speak to charges for one image (Anthropic's ~1,600 tokens
 * for a 1.15-megapixel image; OpenAI's high-detail ceiling is lower).
 */
export const MAX_TOKENS_PER_IMAGE = 1_600;
/** Per message, the most a chat template adds around it (role markers, separators). */
const MAX_TOKENS_PER_MESSAGE = 8;
/** What a provider may add when tools are offered (Anthropic's tool-use system prompt is ~350 tokens). */
const MAX_TOOL_PREAMBLE_TOKENS = 512;

const utf8 = new TextEncoder();
const bytes = (s: string | undefined) => (s ? utf8.encode(s).length : 0);

/**
 * An upper bound of a prompt's tokens for any byte-level BPE or byte-fallback tokenizer (GPT, Claude, Llama,
 * Qwen, Gemma…): such a tokenizer never makes more tokens than the text has UTF-8 bytes. So the bound holds for
 * Chinese or any other script (3 bytes a character) where estimates can be several times low, at the price of
 * over-counting English about fourfold. Tool definitions (their JSON) and images count too. Used for hard-budget
 * holds, where an estimate that is ever low would let a budget be overspent.
 */
export function promptTokenBound(
  messages: readonly TokenizableMessage[],
  extra: { tools?: readonly unknown[]; toolChoice?: unknown; responseFormat?: unknown } = {},
): number {
  let n = MAX_TOKENS_PER_MESSAGE;
  for (const m of messages) {
    n += MAX_TOKENS_PER_MESSAGE + bytes(m.content) + bytes(m.name);
    for (const p of m.parts ?? []) n += p.text !== undefined ? bytes(p.text) : MAX_TOKENS_PER_IMAGE;
    for (const tc of m.toolCalls ?? []) {
      if (tc.function) n += MAX_TOKENS_PER_MESSAGE + bytes(tc.function.name) + bytes(tc.function.arguments);
    }
  }
  if (extra.tools && extra.tools.length > 0) n += MAX_TOOL_PREAMBLE_TOKENS + bytes(JSON.stringify(extra.tools));
  if (extra.toolChoice !== undefined) n += bytes(JSON.stringify(extra.toolChoice));
  if (extra.responseFormat !== undefined) n += bytes(JSON.stringify(extra.responseFormat));
  return n;
}
