import { ChatRequest, EmbedRequest } from "@tokenmesh/proto/common/v1/chat";
import { describe, expect, it } from "vitest";
import { checkChatRequest, checkEmbedRequest } from "./request-checks.js";

const chat = (extra: Partial<ChatRequest>) =>
  ChatRequest.fromPartial({ model: "m", messages: [{ role: 2, content: "hi" }], ...extra });

function deepStruct(depth: number): Record<string, unknown> {
  let v: Record<string, unknown> = { type: "string" };
  for (let i = 0; i < depth; i++) v = { type: "object", properties: { a: v } };
  return v;
}

describe("checkChatRequest", () => {
  it("accepts what the HTTP API accepts", () => {
    expect(() =>
      checkChatRequest(
        chat({
          temperature: 2,
          topP: 0,
          presencePenalty: -2,
          frequencyPenalty: 2,
          maxTokens: 1,
          n: 128,
          stop: ["a", "b", "c", "d"],
        }),
      ),
    ).not.toThrow();
    expect(() =>
      checkChatRequest(
        chat({ tools: [{ type: "function", function: { name: "f", description: "", parameters: deepStruct(10) } }] }),
      ),
    ).not.toThrow();
  });

  it.each([
    ["presence_penalty", { presencePenalty: -3.7e258 }],
    ["frequency_penalty", { frequencyPenalty: Number.NaN }],
    ["temperature", { temperature: Number.POSITIVE_INFINITY }],
    ["top_p", { topP: 1.5 }],
    ["max_tokens", { maxTokens: -1 }],
    ["n", { n: 129 }],
    ["n", { n: -1 }],
    ["stop", { stop: ["a", "b", "c", "d", "e"] }],
    [
      "tools[0].function.parameters",
      { tools: [{ type: "function", function: { name: "f", description: "", parameters: deepStruct(100) } }] },
    ],
  ] as const)("refuses %s out of bounds", (param, extra) => {
    expect(() => checkChatRequest(chat(extra as Partial<ChatRequest>))).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT", param }),
    );
  });
});

describe("checkEmbedRequest", () => {
  it("refuses no input, too many inputs and non-positive dimensions", () => {
    expect(() =>
      checkEmbedRequest(EmbedRequest.fromPartial({ model: "e", input: ["a"], dimensions: 8 })),
    ).not.toThrow();
    expect(() => checkEmbedRequest(EmbedRequest.fromPartial({ model: "e", input: [] }))).toThrow(
      expect.objectContaining({ param: "input" }),
    );
    expect(() => checkEmbedRequest(EmbedRequest.fromPartial({ model: "e", input: new Array(2049).fill("x") }))).toThrow(
      expect.objectContaining({ param: "input" }),
    );
    expect(() => checkEmbedRequest(EmbedRequest.fromPartial({ model: "e", input: ["a"], dimensions: 0 }))).toThrow(
      expect.objectContaining({ param: "dimensions" }),
    );
  });
});
