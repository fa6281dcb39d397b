import type { ChatChunk } from "@tokenmesh/proto/common/v1/chat";
import type { RouteResponse } from "@tokenmesh/proto/router/v1/router";

/** Most chunks one message carries. */
const MAX_CHUNKS = 64;
const TURN_ENDED = Symbol("turn ended");

/** Resolves once the current turn of the event loop is over (after its I/O callbacks and their microtasks). */
const turnEnd = () => new Promise<typeof TURN_ENDED>((resolve) => setImmediate(resolve, TURN_ENDED));

/**
 * Sends the chunks that are ready at once as one message (`more_chunks`) instead of one message each
 * (RouteRequest.batch_chunks). grpc-js writes a stream's messages one after another, each waiting for the previous
 * one's socket write, so twenty chunks parsed from one read of the provider's stream were twenty system calls here
 * and as many reads at the gateway. Chunks that arrive in one turn of the event loop travel together; a chunk that
 * arrives alone goes at the end of its turn. The first chunk is never held (time to first token), a message with a
 * route travels alone, and chunks gathered before an error are sent before it.
 *
 * With `firstAlone` (a client that reads a stream), nor does the first chunk wait for the ones behind it: after it,
 * the next chunk is read only once the turn has ended. Node's HTTP/2 session sends what its streams wrote at the end
 * of a turn, before the turn's `setImmediate` callbacks, so the first chunk leaves before the rest of the provider's
 * read is parsed and converted (all twenty chunks of a fast answer come in one read; reading them first kept the
 * first ~0.2–0.27 ms longer, bench/gateway "Stop 27").
 */
export async function* batchChunks(
  events: AsyncIterable<RouteResponse>,
  options: { firstAlone?: boolean } = {},
): AsyncGenerator<RouteResponse> {
  const it = events[Symbol.asyncIterator]();
  let pending: Promise<IteratorResult<RouteResponse>> | undefined;
  let firstSent = false;
  try {
    for (;;) {
      const r = await (pending ?? it.next());
      pending = undefined;
      if (r.done) return;
      const ev = r.value;
      if (ev.chunk === undefined || ev.chunkRoute !== undefined || !firstSent) {
        const first = ev.chunk !== undefined && !firstSent;
        if (first) firstSent = true;
        yield ev;
        if (first && options.firstAlone) await turnEnd();
        continue;
      }
      const more: ChatChunk[] = [];
      let after: RouteResponse | undefined;
      let ended = false;
      let failure: { err: unknown } | undefined;
      const turn = turnEnd();
      while (more.length < MAX_CHUNKS) {
        pending = it.next();
        let got: IteratorResult<RouteResponse> | typeof TURN_ENDED;
        try {
          got = await Promise.race([pending, turn]);
        } catch (err) {
          pending = undefined;
          failure = { err };
          break;
        }
        if (got === TURN_ENDED) break; // `pending` is read first in the next round
        pending = undefined;
        if (got.done) {
          ended = true;
          break;
        }
        if (got.value.chunk === undefined || got.value.chunkRoute !== undefined) {
          after = got.value;
          break;
        }
        more.push(got.value.chunk);
      }
      yield more.length === 0 ? ev : { ...ev, moreChunks: { chunks: more } };
      if (after !== undefined) yield after;
      if (failure !== undefined) throw failure.err;
      if (ended) return;
    }
  } finally {
    // Stopped early (the caller went): a read still in flight must not end as an unhandled rejection.
    pending?.catch(() => undefined);
    void it.return?.()?.catch?.(() => undefined);
  }
}
