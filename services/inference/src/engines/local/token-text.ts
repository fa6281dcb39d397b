import type { LlamaModel, Token } from "node-llama-cpp";

/** Longest run of tokens a single UTF-8 character may be split across (4 bytes, one byte per token at worst). */
const MAX_PENDING = 4;

/**
 * Turns generated tokens into text incrementally. A character split across tokens (one UTF-8 byte per token, as in
 * byte-fallback vocabularies) is held until complete, so streamed deltas never contain a broken character; after
 * MAX_PENDING tokens the replacement character is emitted as is, since the bytes will never form one.
 */
export class TokenTextDecoder {
  private pending: Token[] = [];
  private readonly context: Token[] = [];

  constructor(private readonly model: LlamaModel) {}

  /** Adds one token; returns the text that became complete (possibly empty). */
  push(token: Token): string {
    this.pending.push(token);
    const text = this.model.detokenize(this.pending, false, this.context);
    if (text.endsWith("\uFFFD") && this.pending.length < MAX_PENDING) return "";
    return this.take(text);
  }

  /** Text of tokens still held (an incomplete character at the end of generation). */
  flush(): string {
    if (this.pending.length === 0) return "";
    return this.take(this.model.detokenize(this.pending, false, this.context));
  }

  private take(text: string): string {
    // A few previous tokens let SentencePiece-style vocabularies decide on a leading space correctly.
    this.context.push(...this.pending);
    if (this.context.length > 8) this.context.splice(0, this.context.length - 8);
    this.pending = [];
    return text;
  }
}
