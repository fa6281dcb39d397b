import {
  type ChatChunk,
  type ChatDelta,
  ChatResponse,
  FinishReason,
  ResponseFormatType,
  Role,
  ToolChoiceMode,
} from "@tokenmesh/proto/common/v1/chat";
import { AppError, BudgetExceededError } from "@tokenmesh/runtime";
import { describe, expect, it } from "vitest";
import {
  type AnthropicEvent,
  anthropicUsage,
  errorEvent,
  estimateInputTokens,
  MessagesStreamTranslator,
  messageId,
  sse,
  stopReason,
  toAnthropicError,
  toAnthropicMessage,
  toChatRequest,
} from "./anthropic.mapping.js";
import { CountTokensBody, firstIssue, MessagesBody } from "./anthropic.schema.js";

const base = { model: "claude-fake", max_tokens: 64 };
const req = (extra: Record<string, unknown>) => toChatRequest(MessagesBody.parse({ ...base, ...extra }));
const user = (content: unknown) => ({ role: "user", content });

describe("Anthropic request → ChatRequest", () => {
  it.each([
    {
      name: "a string system prompt is one system message",
      body: { system: "be brief", messages: [user("hi")] },
      messages: [
        { role: Role.ROLE_SYSTEM, content: "be brief" },
        { role: Role.ROLE_USER, content: "hi" },
      ],
    },
    {
      name: "system blocks are one system message each (cache_control dropped)",
      body: {
        system: [
          { type: "text", text: "A", cache_control: { type: "ephemeral" } },
          { type: "text", text: "B" },
        ],
        messages: [user("hi")],
      },
      messages: [
        { role: Role.ROLE_SYSTEM, content: "A" },
        { role: Role.ROLE_SYSTEM, content: "B" },
        { role: Role.ROLE_USER, content: "hi" },
      ],
    },
    {
      name: "a lone text block is plain content",
      body: { messages: [user([{ type: "text", text: "hello" }])] },
      messages: [{ role: Role.ROLE_USER, content: "hello", parts: [] }],
    },
    {
      name: "images (base64 and URL) and text become parts, base64 as a data URL",
      body: {
        messages: [
          user([
            { type: "text", text: "what is this?" },
            { type: "image", source: { type: "base64", media_type: "image/png", data: "iVBOR" } },
            { type: "image", source: { type: "url", url: "https://example.com/a.jpg" } },
          ]),
        ],
      },
      messages: [
        {
          role: Role.ROLE_USER,
          content: "",
          parts: [
            { text: "what is this?" },
            { imageUrl: { url: "data:image/png;base64,iVBOR", detail: "" } },
            { imageUrl: { url: "https://example.com/a.jpg", detail: "" } },
          ],
        },
      ],
    },
    {
      name: "tool_use becomes tool calls (text first, thinking dropped); tool_result a tool message, is_error kept",
      body: {
        messages: [
          user("weather in Paris?"),
          {
            role: "assistant",
            content: [
              { type: "thinking", thinking: "hmm", signature: "sig" },
              { type: "text", text: "Let me look." },
              { type: "tool_use", id: "toolu_1", name: "get_weather", input: { city: "Paris" } },
            ],
          },
          user([
            { type: "tool_result", tool_use_id: "toolu_1", content: [{ type: "text", text: "18C" }] },
            { type: "tool_result", tool_use_id: "toolu_2", content: "boom", is_error: true },
            { type: "text", text: "and tomorrow?" },
          ]),
        ],
      },
      messages: [
        { role: Role.ROLE_USER, content: "weather in Paris?" },
        {
          role: Role.ROLE_ASSISTANT,
          content: "Let me look.",
          toolCalls: [
            { id: "toolu_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } },
          ],
        },
        { role: Role.ROLE_TOOL, toolCallId: "toolu_1", content: "18C" },
        { role: Role.ROLE_TOOL, toolCallId: "toolu_2", content: "boom", isError: true },
        { role: Role.ROLE_USER, content: "and tomorrow?" },
      ],
    },
    {
      name: "a system turn inside messages keeps its place",
      body: {
        messages: [
          user("hi"),
          { role: "system", content: [{ type: "text", text: "From now on, answer in French." }] },
          user("bonjour"),
        ],
      },
      messages: [
        { role: Role.ROLE_USER, content: "hi" },
        { role: Role.ROLE_SYSTEM, content: "From now on, answer in French." },
        { role: Role.ROLE_USER, content: "bonjour" },
      ],
    },
  ])("$name", ({ body, messages }) => {
    const r = req(body);
    expect(r.messages).toHaveLength(messages.length);
    expect(r.messages).toMatchObject(messages);
  });

  it("carries output_config.format as a JSON-schema response format; thinking and effort are accepted and dropped", () => {
    const schema = { type: "object", properties: { answer: { type: "string" } }, required: ["answer"] };
    const r = req({
      messages: [user("hi")],
      thinking: { type: "adaptive" },
      output_config: { effort: "low", format: { type: "json_schema", schema } },
    });
    expect(r.responseFormat).toEqual({
      type: ResponseFormatType.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
      jsonSchema: { name: "output", description: "", schema, strict: true },
    });
    expect(req({ messages: [user("hi")], thinking: { type: "enabled", budget_tokens: 2048 } }).responseFormat).toBe(
      undefined,
    );
  });

  it("maps sampling, limits, tools, tool choice and metadata", () => {
    const r = req({
      messages: [user("hi")],
      max_tokens: 99,
      temperature: 0.3,
      top_p: 0.8,
      top_k: 40,
      stop_sequences: ["END", "STOP"],
      stream: true,
      metadata: { user_id: "u-42" },
      tools: [
        {
          name: "get_weather",
          description: "Weather by city",
          input_schema: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
          cache_control: { type: "ephemeral" },
        },
      ],
      tool_choice: { type: "tool", name: "get_weather", disable_parallel_tool_use: true },
    });
    expect(r).toMatchObject({
      model: "claude-fake",
      maxTokens: 99,
      temperature: 0.3,
      topP: 0.8,
      topK: 40,
      stop: ["END", "STOP"],
      stream: true,
      streamOptions: { includeUsage: true },
      user: "u-42",
      n: 1,
      parallelToolCalls: false,
      toolChoice: { functionName: "get_weather" },
      tools: [
        {
          type: "function",
          function: {
            name: "get_weather",
            description: "Weather by city",
            parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
          },
        },
      ],
    });
  });

  it.each([
    [{ type: "auto" }, { mode: ToolChoiceMode.TOOL_CHOICE_MODE_AUTO }],
    [{ type: "any" }, { mode: ToolChoiceMode.TOOL_CHOICE_MODE_REQUIRED }],
    [{ type: "none" }, { mode: ToolChoiceMode.TOOL_CHOICE_MODE_NONE }],
  ])("maps tool_choice %o", (choice, expected) => {
    const r = req({ messages: [user("hi")], tool_choice: choice });
    expect(r.toolChoice).toEqual(expected);
    expect(r.parallelToolCalls).toBeUndefined();
  });

  it("leaves unset options unset (the provider's defaults apply)", () => {
    const r = req({ messages: [user("hi")] });
    for (const k of ["temperature", "topP", "topK", "parallelToolCalls", "toolChoice"] as const)
      expect(r[k]).toBeUndefined();
    expect(r.user).toBe("");
    expect(r.stream).toBe(false);
  });

  it.each([
    {
      name: "max_tokens is required",
      body: { model: "m", messages: [user("x")] },
      message: "max_tokens: Field required",
    },
    { name: "temperature above 1", body: { ...base, messages: [user("x")], temperature: 1.5 }, param: "temperature" },
    { name: "no messages", body: { ...base, messages: [] }, param: "messages" },
    {
      name: "an unsupported block type, by name",
      body: { ...base, messages: [user([{ type: "document", source: {} }])] },
      param: "messages.0.content.0.type",
      message: "'document' is not supported",
    },
    {
      name: "a server tool",
      body: { ...base, messages: [user("x")], tools: [{ type: "web_search_20250305", name: "web_search" }] },
      param: "tools.0.type",
    },
    {
      name: "a custom tool without input_schema",
      body: { ...base, messages: [user("x")], tools: [{ name: "f" }] },
      param: "tools.0.input_schema",
    },
    {
      name: "an image of an unsupported media type",
      body: {
        ...base,
        messages: [user([{ type: "image", source: { type: "base64", media_type: "image/bmp", data: "AA" } }])],
      },
      param: "messages.0.content.0.source.media_type",
    },
  ])("refuses: $name", ({ body, param, message }) => {
    const r = MessagesBody.safeParse(body);
    expect(r.success).toBe(false);
    const issue = firstIssue(r.error!);
    if (param !== undefined) expect(issue.param).toBe(param);
    if (message !== undefined) expect(issue.message).toContain(message);
  });

  it.each([
    {
      name: "tool_use in a user turn",
      messages: [user([{ type: "tool_use", id: "t", name: "f", input: {} }])],
      param: "messages.0.content.0.type",
    },
    {
      name: "an image in an assistant turn",
      messages: [
        user("x"),
        { role: "assistant", content: [{ type: "image", source: { type: "url", url: "https://e.com/a.png" } }] },
      ],
      param: "messages.1.content.0.type",
    },
    {
      name: "an image inside a tool_result",
      messages: [
        user([
          {
            type: "tool_result",
            tool_use_id: "t",
            content: [{ type: "image", source: { type: "url", url: "https://e.com/a.png" } }],
          },
        ]),
      ],
      param: "messages.0.content.0.content.0",
    },
  ])("refuses blocks in the wrong turn: $name", ({ messages, param }) => {
    expect(() => req({ messages })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT", param }));
  });
});

describe("count_tokens estimate", () => {
  it("grows with the prompt, images and tools", () => {
    const small = estimateInputTokens(CountTokensBody.parse({ model: "m", messages: [user("hi")] }));
    const longer = estimateInputTokens(
      CountTokensBody.parse({
        model: "m",
        system: "You are a careful assistant.",
        messages: [user("hi there, how are you today?")],
      }),
    );
    const withImage = estimateInputTokens(
      CountTokensBody.parse({
        model: "m",
        messages: [user([{ type: "image", source: { type: "url", url: "https://e.com/a.png" } }])],
      }),
    );
    const withTools = estimateInputTokens(
      CountTokensBody.parse({
        model: "m",
        messages: [user("hi")],
        tools: [{ name: "get_weather", input_schema: { type: "object", properties: { city: { type: "string" } } } }],
      }),
    );
    expect(small).toBeGreaterThan(0);
    expect(longer).toBeGreaterThan(small);
    expect(withImage).toBeGreaterThan(longer);
    expect(withTools).toBeGreaterThan(small);
  });
});

describe("stop reasons", () => {
  it.each([
    [FinishReason.FINISH_REASON_STOP, false, "end_turn"],
    [FinishReason.FINISH_REASON_UNSPECIFIED, false, "end_turn"],
    [FinishReason.FINISH_REASON_LENGTH, false, "max_tokens"],
    [FinishReason.FINISH_REASON_LENGTH, true, "max_tokens"],
    [FinishReason.FINISH_REASON_TOOL_CALLS, true, "tool_use"],
    [FinishReason.FINISH_REASON_STOP, true, "tool_use"],
    [FinishReason.FINISH_REASON_CONTENT_FILTER, false, "refusal"],
  ] as const)("finish %i with tool calls %s → %s", (finish, tools, expected) => {
    expect(stopReason(finish, tools)).toBe(expected);
  });
});

describe("usage", () => {
  it.each([
    [undefined, { input_tokens: 0, output_tokens: 0, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 }],
    [
      { inputTokens: 10, outputTokens: 5, cachedTokens: 0 },
      { input_tokens: 10, output_tokens: 5, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 },
    ],
    [
      // Anthropic's input_tokens leaves cache reads out; ours includes them.
      { inputTokens: 100, outputTokens: 7, cachedTokens: 60 },
      { input_tokens: 40, output_tokens: 7, cache_read_input_tokens: 60, cache_creation_input_tokens: 0 },
    ],
  ])("%o → %o", (u, expected) => {
    expect(anthropicUsage(u)).toEqual(expected);
  });
});

describe("ChatResponse → message", () => {
  const response = (message: Record<string, unknown>, finishReason: FinishReason) =>
    ChatResponse.fromPartial({
      id: "req_abc",
      model: "gpt-4o-mini",
      choices: [{ index: 0, message: { role: Role.ROLE_ASSISTANT, ...message }, finishReason }],
      usage: { inputTokens: 12, outputTokens: 3, cachedTokens: 2 },
    });

  it.each([
    {
      name: "text",
      r: response({ content: "Hello there" }, FinishReason.FINISH_REASON_STOP),
      content: [{ type: "text", text: "Hello there" }],
      stop: "end_turn",
    },
    {
      name: "a tool call, arguments as an input object",
      r: response(
        { toolCalls: [{ id: "call_1", type: "function", function: { name: "f", arguments: '{"a":1}' } }] },
        FinishReason.FINISH_REASON_TOOL_CALLS,
      ),
      content: [{ type: "tool_use", id: "call_1", name: "f", input: { a: 1 } }],
      stop: "tool_use",
    },
    {
      name: "text then a tool call whose arguments are not JSON (input {})",
      r: response(
        { content: "ok", toolCalls: [{ id: "c", type: "function", function: { name: "f", arguments: "{oops" } }] },
        FinishReason.FINISH_REASON_STOP,
      ),
      content: [
        { type: "text", text: "ok" },
        { type: "tool_use", id: "c", name: "f", input: {} },
      ],
      stop: "tool_use",
    },
    {
      name: "a cut answer",
      r: response({ content: "Hel" }, FinishReason.FINISH_REASON_LENGTH),
      content: [{ type: "text", text: "Hel" }],
      stop: "max_tokens",
    },
    {
      name: "a refusal",
      r: response({ refusal: "I can't help with that." }, FinishReason.FINISH_REASON_STOP),
      content: [{ type: "text", text: "I can't help with that." }],
      stop: "refusal",
    },
    {
      name: "an empty answer",
      r: response({}, FinishReason.FINISH_REASON_STOP),
      content: [],
      stop: "end_turn",
    },
  ])("$name", ({ r, content, stop }) => {
    expect(toAnthropicMessage(r, "req_0123abcd")).toEqual({
      id: "msg_0123abcd",
      type: "message",
      role: "assistant",
      model: "gpt-4o-mini",
      content,
      stop_reason: stop,
      stop_sequence: null,
      usage: { input_tokens: 10, output_tokens: 3, cache_read_input_tokens: 2, cache_creation_input_tokens: 0 },
    });
  });
});

describe("ChatChunk stream → Anthropic events", () => {
  const delta = (d: Partial<ChatDelta>): ChatDelta => ({
    index: 0,
    role: Role.ROLE_UNSPECIFIED,
    content: "",
    toolCalls: [],
    finishReason: FinishReason.FINISH_REASON_UNSPECIFIED,
    refusal: "",
    ...d,
  });
  const chunk = (...choices: Partial<ChatDelta>[]): ChatChunk => ({
    id: "req_1",
    created: 1,
    model: "gpt-4o-mini",
    choices: choices.map(delta),
    usage: undefined,
  });
  const usageChunk = (inputTokens: number, outputTokens: number): ChatChunk => ({
    id: "req_1",
    created: 1,
    model: "gpt-4o-mini",
    choices: [],
    usage: { inputTokens, outputTokens, cachedTokens: 0 },
  });
  const run = (chunks: ChatChunk[]): AnthropicEvent[] => {
    const t = new MessagesStreamTranslator("msg_1");
    return [...chunks.flatMap((c) => t.push(c)), ...t.end()];
  };
  /** The events in a compact form: name, block index, and what the delta or block carries. */
  const shape = (events: AnthropicEvent[]) =>
    events.map((e) => {
      const d = e.data as {
        index?: number;
        delta?: { type?: string; text?: string; partial_json?: string; stop_reason?: string };
        content_block?: { type: string; name?: string };
      };
      if (e.event === "content_block_start")
        return `start ${d.index} ${d.content_block!.type}${d.content_block!.name ? ` ${d.content_block!.name}` : ""}`;
      if (e.event === "content_block_delta")
        return `delta ${d.index} ${d.delta!.type === "text_delta" ? d.delta!.text : d.delta!.partial_json}`;
      if (e.event === "content_block_stop") return `stop ${d.index}`;
      if (e.event === "message_delta") return `message_delta ${d.delta!.stop_reason}`;
      return e.event;
    });

  it.each([
    {
      name: "text",
      chunks: [
        chunk({ role: Role.ROLE_ASSISTANT }),
        chunk({ content: "Hello " }),
        chunk({ content: "world" }),
        chunk({ finishReason: FinishReason.FINISH_REASON_STOP }),
        usageChunk(5, 2),
      ],
      events: [
        "message_start",
        "ping",
        "start 0 text",
        "delta 0 Hello ",
        "delta 0 world",
        "stop 0",
        "message_delta end_turn",
        "message_stop",
      ],
    },
    {
      name: "a tool call streamed in argument pieces",
      chunks: [
        chunk({
          role: Role.ROLE_ASSISTANT,
          toolCalls: [{ index: 0, id: "call_1", type: "function", function: { name: "get_weather", arguments: "" } }],
        }),
        chunk({ toolCalls: [{ index: 0, id: "", type: "", function: { name: "", arguments: '{"city":' } }] }),
        chunk({ toolCalls: [{ index: 0, id: "", type: "", function: { name: "", arguments: '"Paris"}' } }] }),
        chunk({ finishReason: FinishReason.FINISH_REASON_TOOL_CALLS }),
        usageChunk(9, 4),
      ],
      events: [
        "message_start",
        "ping",
        "start 0 tool_use get_weather",
        'delta 0 {"city":',
        'delta 0 "Paris"}',
        "stop 0",
        "message_delta tool_use",
        "message_stop",
      ],
    },
    {
      name: "text, then two tool calls (each its own block, closed before the next opens)",
      chunks: [
        chunk({ content: "Checking." }),
        chunk({ toolCalls: [{ index: 0, id: "a", type: "function", function: { name: "f", arguments: "{}" } }] }),
        chunk({ toolCalls: [{ index: 1, id: "b", type: "function", function: { name: "g", arguments: "{}" } }] }),
        chunk({ finishReason: FinishReason.FINISH_REASON_STOP }),
      ],
      events: [
        "message_start",
        "ping",
        "start 0 text",
        "delta 0 Checking.",
        "stop 0",
        "start 1 tool_use f",
        "delta 1 {}",
        "stop 1",
        "start 2 tool_use g",
        "delta 2 {}",
        "stop 2",
        "message_delta tool_use",
        "message_stop",
      ],
    },
    {
      name: "a cut answer",
      chunks: [chunk({ content: "Hel" }), chunk({ finishReason: FinishReason.FINISH_REASON_LENGTH })],
      events: [
        "message_start",
        "ping",
        "start 0 text",
        "delta 0 Hel",
        "stop 0",
        "message_delta max_tokens",
        "message_stop",
      ],
    },
    {
      name: "a guard block mid-answer",
      chunks: [chunk({ content: "partial" }), chunk({ finishReason: FinishReason.FINISH_REASON_CONTENT_FILTER })],
      events: [
        "message_start",
        "ping",
        "start 0 text",
        "delta 0 partial",
        "stop 0",
        "message_delta refusal",
        "message_stop",
      ],
    },
    {
      name: "an empty answer",
      chunks: [chunk({ role: Role.ROLE_ASSISTANT, finishReason: FinishReason.FINISH_REASON_STOP })],
      events: ["message_start", "ping", "message_delta end_turn", "message_stop"],
    },
    {
      name: "choices other than 0 are ignored",
      chunks: [
        chunk({ content: "a" }, { index: 1, content: "b" }),
        chunk({ finishReason: FinishReason.FINISH_REASON_STOP }),
      ],
      events: [
        "message_start",
        "ping",
        "start 0 text",
        "delta 0 a",
        "stop 0",
        "message_delta end_turn",
        "message_stop",
      ],
    },
  ])("$name", ({ chunks, events }) => {
    expect(shape(run(chunks))).toEqual(events);
  });

  it("starts with the message and ends with the whole usage", () => {
    const events = run([
      chunk({ content: "hi" }),
      chunk({ finishReason: FinishReason.FINISH_REASON_STOP }),
      { ...usageChunk(20, 2), usage: { inputTokens: 20, outputTokens: 2, cachedTokens: 5 } },
    ]);
    expect(events[0]!.data).toEqual({
      type: "message_start",
      message: {
        id: "msg_1",
        type: "message",
        role: "assistant",
        model: "gpt-4o-mini",
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: { input_tokens: 0, output_tokens: 0, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 },
      },
    });
    expect(events.at(-2)!.data).toEqual({
      type: "message_delta",
      delta: { stop_reason: "end_turn", stop_sequence: null },
      usage: { input_tokens: 15, output_tokens: 2, cache_read_input_tokens: 5, cache_creation_input_tokens: 0 },
    });
    expect(events.at(-1)!.data).toEqual({ type: "message_stop" });
  });

  it("reports input tokens in message_start when the first chunk already has usage", () => {
    const [start] = new MessagesStreamTranslator("msg_1").push({
      ...chunk({ content: "cached answer", finishReason: FinishReason.FINISH_REASON_STOP }),
      usage: { inputTokens: 8, outputTokens: 2, cachedTokens: 0 },
    });
    expect((start!.data.message as { usage: unknown }).usage).toMatchObject({ input_tokens: 8, output_tokens: 0 });
  });

  it("writes events as SSE with an event line", () => {
    expect(sse({ event: "ping", data: { type: "ping" } })).toBe('event: ping\ndata: {"type":"ping"}\n\n');
  });
});

describe("errors", () => {
  it.each([
    [new AppError("INVALID_ARGUMENT", "bad"), 400, "invalid_request_error"],
    [new AppError("UNAUTHENTICATED", "no key", { reason: "invalid_api_key" }), 401, "authentication_error"],
    [new AppError("PERMISSION_DENIED", "not this model"), 403, "permission_error"],
    [new AppError("NOT_FOUND", "no such model", { reason: "model_not_found" }), 404, "not_found_error"],
    [new AppError("RESOURCE_EXHAUSTED", "slow down", { reason: "rate_limit_exceeded" }), 429, "rate_limit_error"],
    [new BudgetExceededError(), 429, "rate_limit_error"],
    [new AppError("UNAVAILABLE", "no backend"), 503, "overloaded_error"],
    [new AppError("UNAVAILABLE", "upstream 500", { origin: "upstream", upstreamStatus: 500 }), 502, "api_error"],
    [new AppError("DEADLINE_EXCEEDED", "too slow"), 504, "timeout_error"],
    [new AppError("INTERNAL", "oops"), 500, "api_error"],
    [new Error("a bug"), 500, "api_error"],
  ])("%s → %i %s", (err, status, type) => {
    const mapped = toAnthropicError(err, "req_x");
    expect(mapped.status).toBe(status);
    expect(mapped.body).toMatchObject({ type: "error", error: { type }, request_id: "req_x" });
    expect(typeof mapped.body.error.message).toBe("string");
  });

  it("keeps retry-after and a status the handler imposes", () => {
    expect(toAnthropicError(new AppError("RESOURCE_EXHAUSTED", "x", { retryAfterMs: 1500 }), "r").headers).toEqual({
      "retry-after": "2",
    });
    const tooLarge = toAnthropicError(
      new AppError("INVALID_ARGUMENT", "big", { reason: "request_too_large" }),
      "r",
      413,
    );
    expect(tooLarge.status).toBe(413);
    expect(tooLarge.body.error.type).toBe("request_too_large");
  });

  it("ends a broken stream with an error event (no message_stop)", () => {
    const e = errorEvent(new AppError("UNAVAILABLE", "upstream cut", { origin: "upstream" }), "req_9");
    expect(e).toEqual({
      event: "error",
      data: { type: "error", error: { type: "overloaded_error", message: "upstream cut" }, request_id: "req_9" },
    });
  });

  it("ids correlate with the request id", () => {
    expect(messageId("req_00ff")).toBe("msg_00ff");
  });
});
