import { type AnthropicModelEntry, ModelEntrySchema } from "@tokenmesh/catalog";
import { ChatRequest, FinishReason, ResponseFormatType, Role, ToolChoiceMode } from "@tokenmesh/proto/common/v1/chat";
import { describe, expect, it } from "vitest";
import {
  fromAnthropicMessage,
  mapStopReason,
  mapUsage,
  toAnthropicMessages,
  toAnthropicRequest,
  toImageSource,
} from "./anthropic.mapping.js";
import { AnthropicStreamTranslator } from "./anthropic.stream.js";

const entry = ModelEntrySchema.parse({
  id: "claude",
  engine: "anthropic",
  upstream_model: "claude-sonnet-4-5",
  max_output_tokens: 1024,
}) as AnthropicModelEntry;

describe("toAnthropicMessages", () => {
  it("lifts system and developer messages into system and merges consecutive tool results into one user turn, keeping is_error", () => {
    const { system, messages } = toAnthropicMessages(
      ChatRequest.fromPartial({
        messages: [
          { role: Role.ROLE_SYSTEM, content: "A" },
          { role: Role.ROLE_DEVELOPER, parts: [{ text: "B" }] },
          { role: Role.ROLE_USER, content: "q" },
          {
            role: Role.ROLE_ASSISTANT,
            content: "calling",
            toolCalls: [
              { id: "t1", type: "function", function: { name: "f", arguments: '{"x":1}' } },
              { id: "t2", type: "function", function: { name: "g", arguments: "" } },
            ],
          },
          { role: Role.ROLE_TOOL, toolCallId: "t1", content: "one" },
          { role: Role.ROLE_TOOL, toolCallId: "t2", content: "two", isError: true },
        ],
      }).messages,
    );
    expect(system).toBe("A\n\nB");
    expect(messages).toEqual([
      { role: "user", content: "q" },
      {
        role: "assistant",
        content: [
          { type: "text", text: "calling" },
          { type: "tool_use", id: "t1", name: "f", input: { x: 1 } },
          { type: "tool_use", id: "t2", name: "g", input: {} },
        ],
      },
      {
        role: "user",
        content: [
          { type: "tool_result", tool_use_id: "t1", content: "one" },
          { type: "tool_result", tool_use_id: "t2", content: "two", is_error: true },
        ],
      },
    ]);
  });

  it("rejects tool arguments that are not JSON", () => {
    expect(() =>
      toAnthropicMessages(
        ChatRequest.fromPartial({
          messages: [
            { role: Role.ROLE_ASSISTANT, toolCalls: [{ id: "t", function: { name: "f", arguments: "{oops" } }] },
          ],
        }).messages,
      ),
    ).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
  });
});

describe("toImageSource", () => {
  it("turns data URLs into base64 sources and other URLs into url sources", () => {
    expect(toImageSource("data:image/jpeg;base64,AAAA")).toEqual({
      type: "base64",
      media_type: "image/jpeg",
      data: "AAAA",
    });
    expect(toImageSource("https://example.com/a.png")).toEqual({ type: "url", url: "https://example.com/a.png" });
  });
});

describe("toAnthropicRequest", () => {
  it("defaults max_tokens to the entry's max output, clamps temperature and passes top_k", () => {
    const body = toAnthropicRequest(
      entry,
      ChatRequest.fromPartial({
        messages: [{ role: Role.ROLE_USER, content: "hi" }],
        temperature: 2,
        topP: 0.5,
        topK: 40,
        user: "u",
      }),
      true,
    );
    expect(body).toEqual({
      model: "claude-sonnet-4-5",
      max_tokens: 1024,
      messages: [{ role: "user", content: "hi" }],
      temperature: 1,
      top_p: 0.5,
      top_k: 40,
      metadata: { user_id: "u" },
      stream: true,
    });
  });

  it("maps tools and tool choice, including parallel_tool_calls=false", () => {
    const body = toAnthropicRequest(
      entry,
      ChatRequest.fromPartial({
        messages: [{ role: Role.ROLE_USER, content: "hi" }],
        tools: [{ type: "function", function: { name: "f", description: "d" } }],
        toolChoice: { mode: ToolChoiceMode.TOOL_CHOICE_MODE_REQUIRED },
        parallelToolCalls: false,
        maxTokens: 5,
        stop: ["END"],
      }),
      false,
    );
    expect(body).toMatchObject({
      max_tokens: 5,
      stop_sequences: ["END"],
      tools: [{ name: "f", description: "d", input_schema: { type: "object", properties: {} } }],
      tool_choice: { type: "any", disable_parallel_tool_use: true },
    });
  });

  it("rejects what Anthropic cannot promise", () => {
    const msgs = [{ role: Role.ROLE_USER, content: "hi" }];
    expect(() => toAnthropicRequest(entry, ChatRequest.fromPartial({ messages: msgs, n: 2 }), false)).toThrow(
      expect.objectContaining({ param: "n" }),
    );
    expect(() =>
      toAnthropicRequest(
        entry,
        ChatRequest.fromPartial({
          messages: msgs,
          responseFormat: { type: ResponseFormatType.RESPONSE_FORMAT_TYPE_JSON_OBJECT },
        }),
        false,
      ),
    ).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT", param: "response_format" }));
  });
});

describe("usage and stop reasons", () => {
  it("counts cache writes and reads as input and reads as cached", () => {
    expect(
      mapUsage({ input_tokens: 5, cache_creation_input_tokens: 10, cache_read_input_tokens: 20, output_tokens: 3 }),
    ).toEqual({
      inputTokens: 35,
      outputTokens: 3,
      cachedTokens: 20,
    });
  });
  it("maps stop reasons", () => {
    expect(["end_turn", "stop_sequence", "max_tokens", "tool_use", "refusal"].map(mapStopReason)).toEqual([
      FinishReason.FINISH_REASON_STOP,
      FinishReason.FINISH_REASON_STOP,
      FinishReason.FINISH_REASON_LENGTH,
      FinishReason.FINISH_REASON_TOOL_CALLS,
      FinishReason.FINISH_REASON_CONTENT_FILTER,
    ]);
  });
  it("maps a non-streamed message with text and tool_use", () => {
    const chunk = fromAnthropicMessage(
      {
        id: "msg_1",
        model: "claude-x",
        content: [
          { type: "text", text: "a" },
          { type: "tool_use", id: "tu", name: "f", input: { q: 1 } },
        ],
        stop_reason: "tool_use",
      },
      "fallback",
      3,
    );
    expect(chunk).toMatchObject({ id: "msg_1", model: "claude-x", created: 3 });
    expect(chunk.choices[0]).toMatchObject({
      content: "a",
      finishReason: FinishReason.FINISH_REASON_TOOL_CALLS,
      toolCalls: [{ index: 0, id: "tu", type: "function", function: { name: "f", arguments: '{"q":1}' } }],
    });
  });
});

describe("AnthropicStreamTranslator", () => {
  it("turns events into role, text, tool-call and finish deltas and accumulates usage", () => {
    const t = new AnthropicStreamTranslator("m", 1, "P");
    const out = [
      t.onEvent({
        type: "message_start",
        message: {
          id: "msg",
          model: "claude-x",
          usage: { input_tokens: 7, cache_read_input_tokens: 2, output_tokens: 1 },
        },
      }),
      t.onEvent({ type: "content_block_start", index: 0, content_block: { type: "text", text: "" } }),
      t.onEvent({ type: "ping" }),
      t.onEvent({ type: "content_block_delta", index: 0, delta: { type: "text_delta", text: "Hi" } }),
      t.onEvent({ type: "content_block_stop", index: 0 }),
      t.onEvent({
        type: "content_block_start",
        index: 1,
        content_block: { type: "tool_use", id: "tu1", name: "f", input: {} },
      }),
      t.onEvent({ type: "content_block_delta", index: 1, delta: { type: "input_json_delta", partial_json: '{"a":' } }),
      t.onEvent({ type: "content_block_delta", index: 1, delta: { type: "input_json_delta", partial_json: "1}" } }),
      t.onEvent({ type: "message_delta", delta: { stop_reason: "tool_use" }, usage: { output_tokens: 9 } }),
    ];
    expect(t.done).toBe(false);
    t.onEvent({ type: "message_stop" });
    expect(t.done).toBe(true);
    const deltas = out.flatMap((c) => c?.choices ?? []);
    expect(deltas[0]!.role).toBe(Role.ROLE_ASSISTANT);
    expect(deltas.map((d) => d.content).join("")).toBe("Hi");
    expect(deltas.flatMap((d) => d.toolCalls)).toEqual([
      { index: 0, id: "tu1", type: "function", function: { name: "f", arguments: "" } },
      { index: 0, id: "", type: "", function: { name: "", arguments: '{"a":' } },
      { index: 0, id: "", type: "", function: { name: "", arguments: "1}" } },
    ]);
    expect(deltas[deltas.length - 1]!.finishReason).toBe(FinishReason.FINISH_REASON_TOOL_CALLS);
    expect(out[0]).toMatchObject({ id: "msg", model: "claude-x" });
    expect(t.finalUsage()).toEqual({ inputTokens: 9, outputTokens: 9, cachedTokens: 2 });
  });

  it("throws the mapped error for an error event", () => {
    const t = new AnthropicStreamTranslator("m", 1, "P");
    expect(() => t.onEvent({ type: "error", error: { type: "overloaded_error", message: "Overloaded" } })).toThrow(
      expect.objectContaining({ code: "UNAVAILABLE", retryable: true }),
    );
  });
});
