import { type ChatChunk, type ChatDelta, type ChatResponse, FinishReason, Role } from "@tokenmesh/proto/common/v1/chat";
import type { RequestContext } from "@tokenmesh/proto/common/v1/context";
import { AsyncQueue } from "./async-queue.js";
import type { Guard } from "./ports.js";

/** What the guarded stream reports back to the request as it runs. */
export interface StreamObserver {
  /** A chunk carried usage (the last one normally does). */
  onUsage(chunk: ChatChunk): void;
  /** The first chunk with choices passed through. */
  onFirstToken(): void;
  /** Answer text (content, tool-call arguments, refusals) as it arrives from the router, before any filtering. */
  onText(text: string): void;
  /** The stream ended: normally (no error) or with the error the client sees. */
  onEnd(err?: unknown): void;
}

/**
 * Design step 6 for streams: pipes the router's chunks through the guard's output filter. Text goes to the filter
 * and comes back (possibly held back a little, possibly redacted) through its release callback; role, tool-call and
 * finish deltas keep their order relative to the text because a finish waits for the filter to flush that choice.
 * Chunks carry the request's own id (a cached answer replays another request's ids). A policy block stops the
 * stream with finish reason `content_filter`; a failure ends the returned iterable with that error.
 */
export function guardedStream(
  guard: Guard,
  ctx: RequestContext,
  first: ChatChunk,
  rest: AsyncIterable<{ chunk?: ChatChunk }>,
  observer: StreamObserver,
  signal: AbortSignal,
): AsyncIterable<ChatChunk> {
  const out = new AsyncQueue<ChatChunk>();
  const meta = { id: ctx.requestId, created: first.created, model: first.model };
  const textChunk = (index: number, content: string): ChatChunk => ({
    ...meta,
    choices: [
      {
        index,
        role: Role.ROLE_UNSPECIFIED,
        content,
        toolCalls: [],
        finishReason: FinishReason.FINISH_REASON_UNSPECIFIED,
        refusal: "",
      },
    ],
    usage: undefined,
  });
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  signal.addEventListener("abort", onAbort, { once: true });
  let blocked = false;
  const filter = guard.filterOutput(
    ctx,
    (r) => {
      if (r.text) out.push(textChunk(r.index, r.text));
      if (r.blocked) blocked = true;
    },
    stop.signal,
  );
  let finalUsage: ChatChunk | undefined;
  const handle = async (chunk: ChatChunk) => {
    if (chunk.usage) {
      observer.onUsage(chunk);
      finalUsage = chunk;
    }
    if (chunk.choices.length === 0) return;
    observer.onFirstToken();
    const passthrough: ChatDelta[] = [];
    for (const d of chunk.choices) {
      if (d.content) observer.onText(d.content);
      if (d.refusal) observer.onText(d.refusal);
      for (const tc of d.toolCalls) if (tc.function?.arguments) observer.onText(tc.function.arguments);
      if (d.content) filter.write(d.index, d.content);
      const finished = d.finishReason !== FinishReason.FINISH_REASON_UNSPECIFIED;
      if (d.role !== Role.ROLE_UNSPECIFIED || d.toolCalls.length > 0 || d.refusal) {
        passthrough.push({ ...d, content: "", finishReason: FinishReason.FINISH_REASON_UNSPECIFIED });
      }
      if (finished) {
        if (passthrough.length > 0) out.push({ ...meta, choices: passthrough.splice(0), usage: undefined });
        const held = await filter.flush(d.index);
        if (held.text) out.push(textChunk(d.index, held.text));
        blocked ||= held.blocked;
        out.push({
          ...meta,
          choices: [
            {
              index: d.index,
              role: Role.ROLE_UNSPECIFIED,
              content: "",
              toolCalls: [],
              refusal: "",
              finishReason: blocked ? FinishReason.FINISH_REASON_CONTENT_FILTER : d.finishReason,
            },
          ],
          usage: undefined,
        });
      }
    }
    if (passthrough.length > 0) out.push({ ...meta, choices: passthrough, usage: undefined });
  };
  const pump = async () => {
    try {
      await handle(first);
      for await (const ev of rest) {
        if (blocked) break;
        if (ev.chunk) await handle(ev.chunk);
      }
      if (finalUsage) out.push({ ...meta, choices: [], usage: finalUsage.usage });
      out.end();
      observer.onEnd();
    } catch (err) {
      out.fail(err);
      observer.onEnd(err);
    } finally {
      filter.close();
      signal.removeEventListener("abort", onAbort);
    }
  };
  void pump();
  return out;
}

/** Design step 6 for whole answers: filters each choice's text with one guard call, in place. */
export async function guardWholeAnswer(
  guard: Guard,
  ctx: RequestContext,
  response: ChatResponse,
  signal: AbortSignal,
): Promise<void> {
  const texts = response.choices
    .filter((c) => c.message?.content)
    .map((c) => ({ index: c.index, text: c.message!.content }));
  if (texts.length === 0) return;
  const filtered = await guard.filterText(ctx, texts, signal);
  for (const f of filtered) {
    const choice = response.choices.find((c) => c.index === f.index);
    if (!choice?.message) continue;
    choice.message.content = f.text;
    if (f.blocked) choice.finishReason = FinishReason.FINISH_REASON_CONTENT_FILTER;
  }
}
