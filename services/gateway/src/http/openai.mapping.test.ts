import { FinishReason, ResponseFormatType, Role, ToolChoiceMode } from "@tokenmesh/proto/common/v1/chat";
import { describe, expect, it } from "vitest";
import { toChatRequest, toOpenAIChunk, toOpenAIEmbeddings } from "./openai.mapping.js";
import { ChatCompletionBody, firstIssue } from "./openai.schema.js";

describe("OpenAI request mapping", () => {
  it("maps every chat field to the mesh request", () => {
    const body = ChatCompletionBody.parse({
      model: "gpt",
      messages: [
        { role: "system", content: "be brief" },
        {
          role: "user",
          content: [
            { type: "text", text: "what is this?" },
            { type: "image_url", image_url: { url: "data:image/png;base64,AA", detail: "low" } },
          ],
        },
        {
          role: "assistant",
          content: null,
          tool_calls: [{ id: "c1", type: "function", function: { name: "f", arguments: "{}" } }],
        },
        { role: "tool", tool_call_id: "c1", content: "42" },
      ],
      tools: [{ type: "function", function: { name: "f", parameters: { type: "object" } } }],
      tool_choice: "required",
      response_format: { type: "json_schema", json_schema: { name: "s", schema: { type: "object" }, strict: true } },
      temperature: 0.2,
      top_p: 0.9,
      max_completion_tokens: 55,
      stop: "END",
      seed: 7,
      user: "u1",
      stream: true,
      stream_options: { include_usage: true },
    });
    const r = toChatRequest(body);
    expect(r.messages.map((m) => m.role)).toEqual([
      Role.ROLE_SYSTEM,
      Role.ROLE_USER,
      Role.ROLE_ASSISTANT,
      Role.ROLE_TOOL,
    ]);
    expect(r.messages[1]?.parts[1]?.imageUrl).toEqual({ url: "data:image/png;base64,AA", detail: "low" });
    expect(r.messages[2]?.toolCalls[0]?.function?.name).toBe("f");
    expect(r.messages[3]?.toolCallId).toBe("c1");
    expect(r.toolChoice?.mode).toBe(ToolChoiceMode.TOOL_CHOICE_MODE_REQUIRED);
    expect(r.responseFormat?.type).toBe(ResponseFormatType.RESPONSE_FORMAT_TYPE_JSON_SCHEMA);
    expect(r.responseFormat?.jsonSchema?.strict).toBe(true);
    expect(r).toMatchObject({
      temperature: 0.2,
      topP: 0.9,
      maxTokens: 55,
      stop: ["END"],
      seed: 7,
      user: "u1",
      stream: true,
    });
    expect(r.streamOptions?.includeUsage).toBe(true);
  });

  it("names the offending parameter of an invalid body", () => {
    const r = ChatCompletionBody.safeParse({ model: "m", messages: [{ role: "user", content: "x" }], temperature: 5 });
    expect(r.success).toBe(false);
    if (!r.success) expect(firstIssue(r.error).param).toBe("temperature");
    const m = ChatCompletionBody.safeParse({ model: "m", messages: [{ role: "robot", content: "x" }] });
    if (!m.success) expect(firstIssue(m.error).param).toBe("messages[0].role");
  });
});

describe("OpenAI response mapping", () => {
  it("writes tool-call deltas and finish reasons as OpenAI chunks", () => {
    const c = toOpenAIChunk(
      {
        id: "x",
        created: 1,
        model: "m",
        choices: [
          {
            index: 0,
            role: Role.ROLE_ASSISTANT,
            content: "",
            refusal: "",
            toolCalls: [{ index: 0, id: "c1", type: "function", function: { name: "f", arguments: "" } }],
            finishReason: FinishReason.FINISH_REASON_UNSPECIFIED,
          },
        ],
        usage: undefined,
      },
      false,
    );
    expect(c.choices[0]).toEqual({
      index: 0,
      delta: {
        role: "assistant",
        tool_calls: [{ index: 0, id: "c1", type: "function", function: { name: "f", arguments: "" } }],
      },
      logprobs: null,
      finish_reason: null,
    });
  });

  it("packs base64 embeddings as little-endian float32", () => {
    const out = toOpenAIEmbeddings(
      {
        model: "e",
        data: [{ index: 0, values: [1, -0.5] }],
        usage: { inputTokens: 2, outputTokens: 0, cachedTokens: 0 },
      },
      "base64",
    );
    const bytes = Buffer.from(out.data[0]!.embedding as string, "base64");
    expect(Array.from(new Float32Array(bytes.buffer, bytes.byteOffset, 2))).toEqual([1, -0.5]);
  });
});
