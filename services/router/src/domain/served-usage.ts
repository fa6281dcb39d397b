import type { ChatChunk, Usage } from "@tokenmesh/proto/common/v1/chat";
import { estimateTextTokens } from "@tokenmesh/tokens";

/** What the providers served one request, over all its attempts. */
export interface ServedTotals {
  /** The model of the last attempt that served anything. */
  model: string;
  provider: string;
  inputTokens: number;
  outputTokens: number;
  cachedTokens: number;
  /** Some attempt ended without the provider's count: its tokens are the mesh's estimate. */
  estimated: boolean;
  /** Output tokens of attempts whose answer did not reach the client (a lost hedge), included above. */
  discardedOutputTokens: number;
}

/**
 * Counts what providers serve a request, attempt by attempt, so that it can be billed even when the answer never
 * completes (the client leaves, the caller dies, the provider cuts the stream). An attempt that delivered the
 * provider's usage counts exactly that; one that ended without it counts the estimated input (given) and the text
 * it produced, estimated from that text. An attempt that produced nothing and reported no usage counts nothing
 * (providers do not bill a refused or failed request).
 */
export class ServedUsage {
  private totals: ServedTotals | undefined;

  /** @param inputEstimate the request's estimated input tokens, for attempts whose usage never arrives */
  constructor(private readonly inputEstimate: () => number) {}

  /**
   * Passes `chunks` through unchanged while counting them as one attempt of `model`; the attempt is recorded when
   * the stream ends, fails or is abandoned. `discarded` says its answer does not reach the client.
   */
  async *track(
    model: { id: string; engine: string },
    chunks: AsyncIterable<ChatChunk>,
    discarded = false,
  ): AsyncGenerator<ChatChunk> {
    let usage: Usage | undefined;
    let outputEstimate = 0;
    let produced = false;
    try {
      for await (const chunk of chunks) {
        if (chunk.usage) usage = chunk.usage;
        for (const d of chunk.choices) {
          if (d.content) outputEstimate += estimateTextTokens(d.content);
          if (d.refusal) outputEstimate += estimateTextTokens(d.refusal);
          for (const tc of d.toolCalls) {
            if (tc.function?.arguments) outputEstimate += estimateTextTokens(tc.function.arguments);
            if (tc.function?.name) produced = true;
          }
          if (d.content || d.refusal) produced = true;
        }
        yield chunk;
      }
    } finally {
      if (usage !== undefined) this.add(model, usage, false, discarded);
      else if (produced) {
        this.add(
          model,
          { inputTokens: this.inputEstimate(), outputTokens: outputEstimate, cachedTokens: 0 },
          true,
          discarded,
        );
      }
    }
  }

  /** Records a whole attempt's usage (embeddings, or a call whose usage is known at once). */
  add(model: { id: string; engine: string }, usage: Usage, estimated: boolean, discarded = false): void {
    const t = this.totals ?? {
      model: model.id,
      provider: model.engine,
      inputTokens: 0,
      outputTokens: 0,
      cachedTokens: 0,
      estimated: false,
      discardedOutputTokens: 0,
    };
    if (!discarded) {
      t.model = model.id;
      t.provider = model.engine;
    }
    t.inputTokens += usage.inputTokens;
    t.outputTokens += usage.outputTokens;
    t.cachedTokens += usage.cachedTokens;
    t.estimated ||= estimated;
    if (discarded) t.discardedOutputTokens += usage.outputTokens;
    this.totals = t;
  }

  /** What was served, or undefined when no attempt served anything. */
  result(): ServedTotals | undefined {
    return this.totals;
  }
}
