import { type ChatChunk, FinishReason, Role } from "@tokenmesh/proto/common/v1/chat";
import { describe, expect, it } from "vitest";
import { ServedUsage } from "./served-usage.js";

const text = (content: string): ChatChunk => ({
  id: "c",
  created: 1,
  model: "m",
  choices: [
    {
      index: 0,
      role: Role.ROLE_UNSPECIFIED,
      content,
      toolCalls: [],
      finishReason: FinishReason.FINISH_REASON_UNSPECIFIED,
      refusal: "",
    },
  ],
  usage: undefined,
});
const usage = (inputTokens: number, outputTokens: number): ChatChunk => ({
  id: "c",
  created: 1,
  model: "m",
  choices: [],
  usage: { inputTokens, outputTokens, cachedTokens: 0 },
});
async function* stream(chunks: ChatChunk[], failAfter?: number) {
  let n = 0;
  for (const c of chunks) {
    if (failAfter !== undefined && n++ === failAfter) throw new Error("cut");
    yield c;
  }
}
const drain = async (it: AsyncIterable<unknown>, stopAfter = Number.POSITIVE_INFINITY) => {
  let n = 0;
  try {
    for await (const _ of it) if (++n >= stopAfter) break;
  } catch {
    // an attempt that fails is still counted
  }
};
const m = { id: "gpt", engine: "openai" };

describe("ServedUsage", () => {
  it("with drainOnCancel, reads an abandoned attempt to its end in the background and counts all of it", async () => {
    const served = new ServedUsage(() => 7);
    await drain(served.track(m, stream([text("one"), text("two"), usage(7, 40)]), { drainOnCancel: true }), 1);
    await served.settled();
    expect(served.result()).toMatchObject({ inputTokens: 7, outputTokens: 40, estimated: false });
  });

  it("counts the provider's usage when it arrives", async () => {
    const served = new ServedUsage(() => 99);
    await drain(served.track(m, stream([text("hello there"), usage(12, 2)])));
    expect(served.result()).toMatchObject({ model: "gpt", inputTokens: 12, outputTokens: 2, estimated: false });
  });

  it("estimates an attempt that ended early: a cut stream, or a caller that stopped reading", async () => {
    const cut = new ServedUsage(() => 20);
    await drain(cut.track(m, stream([text("one two three"), text("four"), usage(1, 1)], 2)));
    expect(cut.result()).toMatchObject({ inputTokens: 20, outputTokens: 4, estimated: true });
    const left = new ServedUsage(() => 20);
    await drain(left.track(m, stream([text("one two"), text("three"), usage(1, 1)])), 1);
    expect(left.result()).toMatchObject({ inputTokens: 20, outputTokens: 2, estimated: true });
  });

  it("counts nothing for an attempt that produced nothing, and adds up attempts, discarded ones marked", async () => {
    const served = new ServedUsage(() => 5);
    await drain(served.track(m, stream([text("x")], 0)));
    expect(served.result()).toBeUndefined();
    await drain(served.track({ id: "slow", engine: "anthropic" }, stream([text("a b c")]), { discarded: true }), 1);
    await drain(served.track(m, stream([text("fast answer"), usage(5, 2)])));
    expect(served.result()).toMatchObject({
      model: "gpt",
      inputTokens: 10,
      outputTokens: 5,
      discardedOutputTokens: 3,
      estimated: true,
    });
  });
});
