import { ModelEntrySchema, type OpenAIModelEntry } from "@tokenmesh/catalog";
import { ChatRequest, FinishReason, ResponseFormatType, Role, ToolChoiceMode } from "@tokenmesh/proto/common/v1/chat";
import { describe, expect, it } from "vitest";
import { fromOpenAIChunk, fromOpenAICompletion, mapFinishReason, mapUsage, toOpenAIRequest } from "./openai.mapping.js";

const entry = ModelEntrySchema.parse({
  id: "gpt",
  engine: "openai",
  base_url: "https://api.openai.com/v1",
  upstream_model: "gpt-4o-mini",
}) as OpenAIModelEntry;

describe("toOpenAIRequest", () => {
  it("sends only the fields set, with the upstream model name", () => {
    const body = toOpenAIRequest(
      entry,
      ChatRequest.fromPartial({ model: "gpt", messages: [{ role: Role.ROLE_USER, content: "hi" }] }),
      false,
    );
    expect(body).toEqual({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] });
  });

  it("always asks for usage when streaming", () => {
    const body = toOpenAIRequest(
      entry,
      ChatRequest.fromPartial({ messages: [{ role: Role.ROLE_USER, content: "hi" }] }),
      true,
    );
    expect(body).toMatchObject({ stream: true, stream_options: { include_usage: true } });
  });

  it("maps parts, tool calls, tools, tool choice, json_schema and sampling options", () => {
    const req = ChatRequest.fromPartial({
      messages: [
        { role: Role.ROLE_DEVELOPER, content: "rules" },
        {
          role: Role.ROLE_USER,
          name: "ann",
          parts: [{ text: "see" }, { imageUrl: { url: "https://x/img.png", detail: "low" } }],
        },
        {
          role: Role.ROLE_ASSISTANT,
          toolCalls: [{ id: "c1", type: "function", function: { name: "f", arguments: "{}" } }],
        },
        { role: Role.ROLE_TOOL, toolCallId: "c1", content: "42" },
      ],
      tools: [
        { type: "function", function: { name: "f", description: "d", parameters: { type: "object" }, strict: true } },
      ],
      toolChoice: { functionName: "f" },
      parallelToolCalls: true,
      responseFormat: {
        type: ResponseFormatType.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
        jsonSchema: { name: "out", description: "", schema: { type: "object" }, strict: true },
      },
      temperature: 0.5,
      topP: 0.9,
      maxTokens: 10,
      stop: ["\n"],
      seed: 7,
      n: 2,
      user: "u1",
      presencePenalty: 0.1,
      frequencyPenalty: 0.2,
    });
    expect(toOpenAIRequest(entry, req, false)).toEqual({
      model: "gpt-4o-mini",
      messages: [
        { role: "developer", content: "rules" },
        {
          role: "user",
          name: "ann",
          content: [
            { type: "text", text: "see" },
            { type: "image_url", image_url: { url: "https://x/img.png", detail: "low" } },
          ],
        },
        {
          role: "assistant",
          content: null,
          tool_calls: [{ id: "c1", type: "function", function: { name: "f", arguments: "{}" } }],
        },
        { role: "tool", content: "42", tool_call_id: "c1" },
      ],
      tools: [
        { type: "function", function: { name: "f", description: "d", parameters: { type: "object" }, strict: true } },
      ],
      parallel_tool_calls: true,
      tool_choice: { type: "function", function: { name: "f" } },
      response_format: { type: "json_schema", json_schema: { name: "out", schema: { type: "object" }, strict: true } },
      temperature: 0.5,
      top_p: 0.9,
      max_tokens: 10,
      stop: ["\n"],
      seed: 7,
      n: 2,
      user: "u1",
      presence_penalty: 0.1,
      frequency_penalty: 0.2,
    });
  });

  it("maps tool choice modes and drops parallel_tool_calls without tools", () => {
    const body = toOpenAIRequest(
      entry,
      ChatRequest.fromPartial({
        messages: [],
        toolChoice: { mode: ToolChoiceMode.TOOL_CHOICE_MODE_REQUIRED },
        parallelToolCalls: false,
      }),
      false,
    );
    expect(body.tool_choice).toBe("required");
    expect(body.parallel_tool_calls).toBeUndefined();
  });

  it("rejects a message without a role", () => {
    expect(() => toOpenAIRequest(entry, ChatRequest.fromPartial({ messages: [{ content: "x" }] }), false)).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT" }),
    );
  });
});

describe("fromOpenAIChunk", () => {
  it("maps content, tool-call deltas and finish reasons per choice", () => {
    const chunk = fromOpenAIChunk(
      {
        id: "c",
        created: 5,
        model: "gpt-4o-mini-2024",
        choices: [
          { index: 0, delta: { role: "assistant", content: "Hi" }, finish_reason: null },
          {
            index: 1,
            delta: {
              tool_calls: [{ index: 0, id: "call_1", type: "function", function: { name: "f", arguments: "" } }],
            },
            finish_reason: "tool_calls",
          },
        ],
      },
      "fallback",
      1,
    );
    expect(chunk).toMatchObject({ id: "c", created: 5, model: "gpt-4o-mini-2024" });
    expect(chunk!.choices[0]).toMatchObject({
      index: 0,
      role: Role.ROLE_ASSISTANT,
      content: "Hi",
      finishReason: FinishReason.FINISH_REASON_UNSPECIFIED,
    });
    expect(chunk!.choices[1]).toMatchObject({
      index: 1,
      finishReason: FinishReason.FINISH_REASON_TOOL_CALLS,
      toolCalls: [{ index: 0, id: "call_1", type: "function", function: { name: "f", arguments: "" } }],
    });
  });

  it("has no chunk for a usage-only event", () => {
    expect(fromOpenAIChunk({ id: "c", choices: [], usage: { prompt_tokens: 1 } }, "m", 1)).toBeUndefined();
  });
});

describe("fromOpenAICompletion", () => {
  it("puts each choice's full message in one chunk", () => {
    const chunk = fromOpenAICompletion(
      {
        id: "x",
        choices: [
          {
            index: 0,
            message: {
              role: "assistant",
              content: null,
              tool_calls: [{ id: "a", type: "function", function: { name: "f", arguments: '{"q":1}' } }],
            },
            finish_reason: "tool_calls",
          },
        ],
      },
      "m",
      9,
    );
    expect(chunk).toMatchObject({ id: "x", created: 9, model: "m" });
    expect(chunk.choices[0]).toMatchObject({
      role: Role.ROLE_ASSISTANT,
      content: "",
      toolCalls: [{ index: 0, id: "a", function: { name: "f", arguments: '{"q":1}' } }],
      finishReason: FinishReason.FINISH_REASON_TOOL_CALLS,
    });
  });
});

describe("usage and finish reasons", () => {
  it("maps prompt, completion and cached tokens", () => {
    expect(mapUsage({ prompt_tokens: 10, completion_tokens: 3, prompt_tokens_details: { cached_tokens: 4 } })).toEqual({
      inputTokens: 10,
      outputTokens: 3,
      cachedTokens: 4,
    });
    expect(mapUsage({ prompt_tokens: 1, completion_tokens: 1, prompt_tokens_details: null })).toEqual({
      inputTokens: 1,
      outputTokens: 1,
      cachedTokens: 0,
    });
  });
  it("maps every finish reason", () => {
    expect(["stop", "length", "tool_calls", "function_call", "content_filter", null].map(mapFinishReason)).toEqual([
      FinishReason.FINISH_REASON_STOP,
      FinishReason.FINISH_REASON_LENGTH,
      FinishReason.FINISH_REASON_TOOL_CALLS,
      FinishReason.FINISH_REASON_TOOL_CALLS,
      FinishReason.FINISH_REASON_CONTENT_FILTER,
      FinishReason.FINISH_REASON_UNSPECIFIED,
    ]);
  });
});
