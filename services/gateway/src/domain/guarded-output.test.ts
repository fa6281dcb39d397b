import type { ChatChunk } from "@tokenmesh/proto/common/v1/chat";
import type { RequestContext } from "@tokenmesh/proto/common/v1/context";
import { describe, expect, it } from "vitest";
import { guardedStream } from "./guarded-output.js";
import type { Guard } from "./ports.js";

const ctx = { requestId: "req_1" } as RequestContext;
const first = { id: "c", created: 1, model: "m", choices: [], usage: undefined } as unknown as ChatChunk;
const observer = { onUsage() {}, onFirstToken() {}, onText() {}, onEnd() {} };

/** A guard whose output filter passes text through and records the signal it was given. */
function recordingGuard() {
  const seen: { signal?: AbortSignal } = {};
  const guard = {
    filterOutput(_ctx: RequestContext, _release: unknown, signal: AbortSignal) {
      seen.signal = signal;
      return { write() {}, flush: async () => ({ text: "", blocked: false }), close() {} };
    },
  } as unknown as Guard;
  return { guard, seen };
}

describe("guardedStream", () => {
  it("stops the output filter when the request's signal was aborted before the stream started", async () => {
    const { guard, seen } = recordingGuard();
    const gone = new AbortController();
    gone.abort();
    const out = guardedStream(guard, ctx, first, (async function* () {})(), observer, gone.signal);
    for await (const _ of out) {
    }
    expect(seen.signal?.aborted).toBe(true);
  });

  it("stops it when the signal aborts later, and not before", async () => {
    const { guard, seen } = recordingGuard();
    const live = new AbortController();
    let release: () => void = () => {};
    const waiting = new Promise<void>((r) => (release = r));
    const rest = (async function* () {
      await waiting;
      yield* [];
    })();
    const out = guardedStream(guard, ctx, first, rest, observer, live.signal);
    expect(seen.signal?.aborted).toBe(false);
    live.abort();
    expect(seen.signal?.aborted).toBe(true);
    release();
    for await (const _ of out) {
    }
  });
});
