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
  private readonly pending: Promise<void>[] = [];

  /**
   * @param inputEstimate the request's estimated input tokens, for attempts whose usage never arrives
   * @param onChange called after every attempt is recorded, so the caller can report at once: an attempt whose
   *   provider usage arrives is recorded right then, before its last chunk is passed on, so a process that dies
   *   while forwarding the answer has already reported it
   */
  constructor(
    private readonly inputEstimate: () => number,
    private readonly onChange?: (totals: ServedTotals) => void,
  ) {}

  /**
   * Passes `chunks` through unchanged while counting them as one attempt of `model`; the attempt is recorded when
   * the stream ends, fails or is abandoned. `discarded` says its answer does not reach the client; as a function it
   * is asked when the attempt is recorded (a hedge's loser is known only once another attempt won).
   *
   * When `billsInput` (asked at record time) says so, an attempt that produced nothing still counts the estimated
   * input: the provider had the prompt (a hedge's cancelled loser), so cost hears about it rather than nothing.
   *
   * With `drainOnCancel`, a consumer that stops reading early does not end the attempt: the rest is read (and
   * counted) in the background, so an answer the provider is producing anyway (a non-streamed request is generated
   * and billed whole) is billed even when its caller is gone. The source must then not be tied to the caller's
   * cancellation. `settled()` waits for such drains.
   */
  async *track(
    model: { id: string; engine: string },
    chunks: AsyncIterable<ChatChunk>,
    options: { discarded?: boolean | (() => boolean); drainOnCancel?: boolean; billsInput?: () => boolean } = {},
  ): AsyncGenerator<ChatChunk> {
    const attempt = { usage: undefined as Usage | undefined, outputEstimate: 0, produced: false };
    const count = (chunk: ChatChunk) => {
      if (chunk.usage) attempt.usage = chunk.usage;
      for (const d of chunk.choices) {
        if (d.content) attempt.outputEstimate += estimateTextTokens(d.content);
        if (d.refusal) attempt.outputEstimate += estimateTextTokens(d.refusal);
        for (const tc of d.toolCalls) {
          if (tc.function?.arguments) attempt.outputEstimate += estimateTextTokens(tc.function.arguments);
          if (tc.function?.name) attempt.produced = true;
        }
        if (d.content || d.refusal) attempt.produced = true;
      }
    };
    let recorded = false;
    const record = () => {
      if (recorded) return;
      recorded = true;
      const discarded = typeof options.discarded === "function" ? options.discarded() : (options.discarded ?? false);
      if (attempt.usage !== undefined) this.add(model, attempt.usage, false, discarded);
      else if (attempt.produced || options.billsInput?.() === true) {
        const estimate = { inputTokens: this.inputEstimate(), outputTokens: attempt.outputEstimate, cachedTokens: 0 };
        this.add(model, estimate, true, discarded);
      }
    };
    const iterator = chunks[Symbol.asyncIterator]();
    let ended = false;
    let failed = false;
    try {
      for (;;) {
        let next: IteratorResult<ChatChunk>;
        try {
          next = await iterator.next();
        } catch (err) {
          failed = true;
          throw err;
        }
        if (next.done) {
          ended = true;
          break;
        }
        count(next.value);
        // The provider's count is final: record it before the chunk goes on (see the constructor's onChange).
        if (next.value.usage) record();
        yield next.value;
      }
    } finally {
      if (!ended && !failed && options.drainOnCancel) {
        this.pending.push(
          (async () => {
            try {
              for (let next = await iterator.next(); !next.done; next = await iterator.next()) count(next.value);
            } catch {
              // the attempt failed on its own: what it served so far is counted below
            } finally {
              record();
            }
          })(),
        );
      } else {
        if (!ended && !failed) await iterator.return?.();
        record();
      }
    }
  }

  /** Resolves once every attempt drained in the background (see `drainOnCancel`) has ended. */
  async settled(): Promise<void> {
    await Promise.all(this.pending);
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
    this.onChange?.({ ...t });
  }

  /** What was served, or undefined when no attempt served anything. */
  result(): ServedTotals | undefined {
    return this.totals;
  }
}
