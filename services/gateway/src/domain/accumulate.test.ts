import { FinishReason, Role } from "@tokenmesh/proto/common/v1/chat";
import { describe, expect, it } from "vitest";
import { ResponseAccumulator } from "./accumulate.js";

const delta = (over: object) => ({
  index: 0,
  role: Role.ROLE_UNSPECIFIED,
  content: "",
  toolCalls: [],
  finishReason: FinishReason.FINISH_REASON_UNSPECIFIED,
  refusal: "",
  ...over,
});

describe("ResponseAccumulator", () => {
  it("concatenates text per choice and keeps the last finish reason and usage", () => {
    const acc = new ResponseAccumulator();
    acc.add({
      id: "c1",
      created: 1,
      model: "m",
      choices: [delta({ role: Role.ROLE_ASSISTANT, content: "Hel" })],
      usage: undefined,
    });
    acc.add({
      id: "c1",
      created: 1,
      model: "m",
      choices: [delta({ content: "lo", finishReason: FinishReason.FINISH_REASON_LENGTH })],
      usage: undefined,
    });
    acc.add({
      id: "c1",
      created: 1,
      model: "m",
      choices: [],
      usage: { inputTokens: 3, outputTokens: 2, cachedTokens: 1 },
    });
    const r = acc.result("local", false);
    expect(r.choices[0]?.message?.content).toBe("Hello");
    expect(r.choices[0]?.finishReason).toBe(FinishReason.FINISH_REASON_LENGTH);
    expect(r.usage).toEqual({ inputTokens: 3, outputTokens: 2, cachedTokens: 1 });
  });

  it("merges streamed tool-call deltas by index", () => {
    const acc = new ResponseAccumulator();
    acc.add({
      id: "c",
      created: 1,
      model: "m",
      choices: [
        delta({
          toolCalls: [
            { index: 0, id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"ci' } },
          ],
        }),
      ],
      usage: undefined,
    });
    acc.add({
      id: "c",
      created: 1,
      model: "m",
      choices: [
        delta({
          toolCalls: [{ index: 0, id: "", type: "", function: { name: "", arguments: 'ty":"Paris"}' } }],
          finishReason: FinishReason.FINISH_REASON_TOOL_CALLS,
        }),
      ],
      usage: undefined,
    });
    const r = acc.result("openai", false);
    expect(r.choices[0]?.message?.toolCalls).toEqual([
      { id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } },
    ]);
    expect(r.choices[0]?.finishReason).toBe(FinishReason.FINISH_REASON_TOOL_CALLS);
  });
});
