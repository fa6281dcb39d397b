import { type ChatChunk, type ChatDelta, type ChatResponse, FinishReason, Role } from "@tokenmesh/proto/common/v1/chat";
import type { RequestContext } from "@tokenmesh/proto/common/v1/context";
import { AsyncQueue } from "./async-queue.js";
import type { Guard, OutputSlot } from "./ports.js";

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
 * Design step 6 for streams: pipes the router's chunks through the guard's output filter. Content, refusal text and
 * each tool call's arguments go to the filter, each as a slot of its own, and come back (possibly held back a
 * little, possibly redacted) through its release callback as deltas of the same kind.
 *
 * Ordering: a choice's role delta is sent before any of its text; a tool call's header (id, type, name) is sent
 * when it arrives, before any of its arguments; within a slot, text keeps its order. Held-back text of one slot may
 * follow deltas of another slot that arrived after it (a tool call may start while the content's last word is still
 * held). A finish waits for the filter to flush every slot of that choice, so it comes after all of them.
 *
 * Chunks carry the request's own id (a cached answer replays another request's ids). A policy block — in content,
 * refusal or tool arguments — stops the stream: every choice not yet finished gets finish reason `content_filter`
 * and nothing more is sent. A failure ends the returned iterable with that error.
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
  const deltaChunk = (index: number, fields: Partial<ChatDelta>): ChatChunk => ({
    ...meta,
    choices: [
      {
        index,
        role: Role.ROLE_UNSPECIFIED,
        content: "",
        toolCalls: [],
        finishReason: FinishReason.FINISH_REASON_UNSPECIFIED,
        refusal: "",
        ...fields,
      },
    ],
    usage: undefined,
  });
  /** Released text of one slot as the delta that carries it. */
  const slotChunk = (index: number, slot: OutputSlot | undefined, text: string): ChatChunk => {
    if (slot === undefined || slot === "content") return deltaChunk(index, { content: text });
    if (slot === "refusal") return deltaChunk(index, { refusal: text });
    const call = Number(slot.slice("tool:".length));
    return deltaChunk(index, {
      toolCalls: [{ index: call, id: "", type: "", function: { name: "", arguments: text } }],
    });
  };
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  // A signal aborted before this call fires no event: the filter (and its deep tier) must stop all the same.
  if (signal.aborted) stop.abort();
  else signal.addEventListener("abort", onAbort, { once: true });
  let blocked = false;
  /** Choices seen, and those whose finish was sent: a block finishes the rest with `content_filter`. */
  const open = new Set<number>();
  const finished = new Set<number>();
  const filter = guard.filterOutput(
    ctx,
    (r) => {
      if (r.text) out.push(slotChunk(r.index, r.slot, r.text));
      if (r.blocked) blocked = true;
    },
    stop.signal,
  );
  const finish = (index: number, reason: FinishReason) => {
    finished.add(index);
    out.push(deltaChunk(index, { finishReason: reason }));
  };
  let finalUsage: ChatChunk | undefined;
  const handle = async (chunk: ChatChunk) => {
    if (chunk.usage) {
      observer.onUsage(chunk);
      finalUsage = chunk;
    }
    if (chunk.choices.length === 0) return;
    observer.onFirstToken();
    for (const d of chunk.choices) {
      if (d.content) observer.onText(d.content);
      if (d.refusal) observer.onText(d.refusal);
      for (const tc of d.toolCalls) if (tc.function?.arguments) observer.onText(tc.function.arguments);
      if (blocked) continue;
      open.add(d.index);
      if (d.role !== Role.ROLE_UNSPECIFIED) out.push(deltaChunk(d.index, { role: d.role }));
      if (d.content) filter.write(d.index, d.content);
      if (d.refusal) filter.write(d.index, d.refusal, "refusal");
      for (const call of d.toolCalls) {
        // The header goes out as it comes (nothing in it is redacted); the arguments go through the filter.
        if (call.id || call.type || call.function?.name) {
          out.push(
            deltaChunk(d.index, {
              toolCalls: [{ ...call, function: call.function ? { ...call.function, arguments: "" } : undefined }],
            }),
          );
        }
        if (call.function?.arguments) filter.write(d.index, call.function.arguments, `tool:${call.index}`);
      }
      if (d.finishReason !== FinishReason.FINISH_REASON_UNSPECIFIED) {
        const held = await filter.flush(d.index);
        if (held.text) out.push(deltaChunk(d.index, { content: held.text }));
        blocked ||= held.blocked;
        finish(d.index, blocked ? FinishReason.FINISH_REASON_CONTENT_FILTER : d.finishReason);
      }
    }
  };
  const pump = async () => {
    try {
      await handle(first);
      for await (const ev of rest) {
        if (blocked) break;
        if (ev.chunk) await handle(ev.chunk);
      }
      if (blocked) {
        for (const index of [...open].sort((a, b) => a - b)) {
          if (!finished.has(index)) finish(index, FinishReason.FINISH_REASON_CONTENT_FILTER);
        }
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

/**
 * Design step 6 for whole answers: filters each choice's content, refusal and tool-call arguments with one guard
 * call, in place (tool call `n` here is the n-th of the message). A block in any of them empties that choice — no
 * content, refusal or tool calls — with finish reason `content_filter`.
 */
export async function guardWholeAnswer(
  guard: Guard,
  ctx: RequestContext,
  response: ChatResponse,
  signal: AbortSignal,
): Promise<void> {
  const texts: { index: number; slot?: OutputSlot; text: string }[] = [];
  for (const c of response.choices) {
    const m = c.message;
    if (!m) continue;
    if (m.content) texts.push({ index: c.index, text: m.content });
    if (m.refusal) texts.push({ index: c.index, slot: "refusal", text: m.refusal });
    m.toolCalls.forEach((call, n) => {
      if (call.function?.arguments) texts.push({ index: c.index, slot: `tool:${n}`, text: call.function.arguments });
    });
  }
  if (texts.length === 0) return;
  const filtered = await guard.filterText(ctx, texts, signal);
  const blocked = new Set<number>();
  for (const f of filtered) {
    const m = response.choices.find((c) => c.index === f.index)?.message;
    if (!m) continue;
    if (f.blocked) blocked.add(f.index);
    else if (f.slot === undefined || f.slot === "content") m.content = f.text;
    else if (f.slot === "refusal") m.refusal = f.text;
    else {
      const fn = m.toolCalls[Number(f.slot.slice("tool:".length))]?.function;
      if (fn) fn.arguments = f.text;
    }
  }
  for (const choice of response.choices) {
    if (!blocked.has(choice.index) || !choice.message) continue;
    choice.message.content = "";
    choice.message.refusal = "";
    choice.message.toolCalls = [];
    choice.finishReason = FinishReason.FINISH_REASON_CONTENT_FILTER;
  }
}
