import {
  type ChatChunk,
  type ChatMessage,
  type ChatRequest,
  type ChatResponse,
  type EmbedResponse,
  FinishReason,
  ResponseFormatType,
  Role,
  type ToolChoice,
  ToolChoiceMode,
  type Usage,
} from "@tokenmesh/proto/common/v1/chat";
import type { ChatCompletionBody, EmbeddingsBody } from "./openai.schema.js";

const ROLES: Record<ChatCompletionBody["messages"][number]["role"], Role> = {
  system: Role.ROLE_SYSTEM,
  developer: Role.ROLE_DEVELOPER,
  user: Role.ROLE_USER,
  assistant: Role.ROLE_ASSISTANT,
  tool: Role.ROLE_TOOL,
};

function toolChoice(c: ChatCompletionBody["tool_choice"]): ToolChoice | undefined {
  if (c === undefined) return undefined;
  if (typeof c === "string") {
    const mode = {
      none: ToolChoiceMode.TOOL_CHOICE_MODE_NONE,
      auto: ToolChoiceMode.TOOL_CHOICE_MODE_AUTO,
      required: ToolChoiceMode.TOOL_CHOICE_MODE_REQUIRED,
    }[c];
    return { mode };
  }
  return { functionName: c.function.name };
}

/** Maps a validated OpenAI chat body to the mesh's ChatRequest. */
export function toChatRequest(b: ChatCompletionBody): ChatRequest {
  const messages: ChatMessage[] = b.messages.map((m) => ({
    role: ROLES[m.role],
    content: typeof m.content === "string" ? m.content : "",
    parts: Array.isArray(m.content)
      ? m.content.map((p) =>
          p.type === "text"
            ? { text: p.text }
            : { imageUrl: { url: p.image_url.url, detail: p.image_url.detail ?? "" } },
        )
      : [],
    name: m.name ?? "",
    toolCalls: (m.tool_calls ?? []).map((tc) => ({
      id: tc.id,
      type: tc.type,
      function: { name: tc.function.name, arguments: tc.function.arguments },
    })),
    toolCallId: m.tool_call_id ?? "",
    refusal: m.refusal ?? "",
  }));
  const rf = b.response_format;
  return {
    model: b.model,
    messages,
    tools: (b.tools ?? []).map((t) => ({
      type: t.type,
      function: {
        name: t.function.name,
        description: t.function.description ?? "",
        parameters: t.function.parameters,
        ...(t.function.strict != null ? { strict: t.function.strict } : {}),
      },
    })),
    toolChoice: toolChoice(b.tool_choice),
    ...(b.parallel_tool_calls !== undefined ? { parallelToolCalls: b.parallel_tool_calls } : {}),
    responseFormat: rf
      ? {
          type:
            rf.type === "text"
              ? ResponseFormatType.RESPONSE_FORMAT_TYPE_TEXT
              : rf.type === "json_object"
                ? ResponseFormatType.RESPONSE_FORMAT_TYPE_JSON_OBJECT
                : ResponseFormatType.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
          jsonSchema:
            rf.type === "json_schema"
              ? {
                  name: rf.json_schema.name,
                  description: rf.json_schema.description ?? "",
                  schema: rf.json_schema.schema,
                  ...(rf.json_schema.strict != null ? { strict: rf.json_schema.strict } : {}),
                }
              : undefined,
        }
      : undefined,
    ...(b.temperature != null ? { temperature: b.temperature } : {}),
    ...(b.top_p != null ? { topP: b.top_p } : {}),
    ...((b.max_completion_tokens ?? b.max_tokens) != null
      ? { maxTokens: (b.max_completion_tokens ?? b.max_tokens)! }
      : {}),
    stop: b.stop == null ? [] : typeof b.stop === "string" ? [b.stop] : b.stop,
    ...(b.seed != null ? { seed: b.seed } : {}),
    n: b.n ?? 1,
    user: b.user ?? "",
    stream: b.stream === true,
    streamOptions: b.stream_options ? { includeUsage: b.stream_options.include_usage === true } : undefined,
    ...(b.presence_penalty != null ? { presencePenalty: b.presence_penalty } : {}),
    ...(b.frequency_penalty != null ? { frequencyPenalty: b.frequency_penalty } : {}),
    metadata: b.metadata ?? {},
  };
}

const FINISH: Record<FinishReason, string | null> = {
  [FinishReason.FINISH_REASON_UNSPECIFIED]: null,
  [FinishReason.FINISH_REASON_STOP]: "stop",
  [FinishReason.FINISH_REASON_LENGTH]: "length",
  [FinishReason.FINISH_REASON_TOOL_CALLS]: "tool_calls",
  [FinishReason.FINISH_REASON_CONTENT_FILTER]: "content_filter",
};

/** OpenAI's finish_reason string for a FinishReason (null while unfinished). */
export function finishReasonName(r: FinishReason): string | null {
  return FINISH[r] ?? null;
}

export function openAIUsage(u: Usage | undefined) {
  const input = u?.inputTokens ?? 0;
  const output = u?.outputTokens ?? 0;
  return {
    prompt_tokens: input,
    completion_tokens: output,
    total_tokens: input + output,
    prompt_tokens_details: { cached_tokens: u?.cachedTokens ?? 0 },
  };
}

/** The `chat.completion` object for a non-streamed response. */
export function toOpenAICompletion(r: ChatResponse) {
  return {
    id: r.id,
    object: "chat.completion",
    created: r.created,
    model: r.model,
    choices: r.choices.map((c) => ({
      index: c.index,
      message: {
        role: "assistant",
        content: c.message?.content || (c.message?.toolCalls.length ? null : ""),
        ...(c.message?.toolCalls.length
          ? {
              tool_calls: c.message.toolCalls.map((tc) => ({
                id: tc.id,
                type: "function",
                function: { name: tc.function?.name ?? "", arguments: tc.function?.arguments ?? "" },
              })),
            }
          : {}),
        refusal: c.message?.refusal || null,
      },
      logprobs: null,
      finish_reason: finishReasonName(c.finishReason) ?? "stop",
    })),
    usage: openAIUsage(r.usage),
    system_fingerprint: null,
  };
}

/** A `chat.completion.chunk` object (the usage chunk has no choices). */
export function toOpenAIChunk(c: ChatChunk, includeUsage: boolean) {
  return {
    id: c.id,
    object: "chat.completion.chunk",
    created: c.created,
    model: c.model,
    system_fingerprint: null,
    choices: c.choices.map((d) => {
      const delta: Record<string, unknown> = {};
      if (d.role === Role.ROLE_ASSISTANT) delta.role = "assistant";
      if (d.content) delta.content = d.content;
      if (d.refusal) delta.refusal = d.refusal;
      if (d.toolCalls.length > 0) {
        delta.tool_calls = d.toolCalls.map((t) => ({
          index: t.index,
          ...(t.id ? { id: t.id, type: t.type || "function" } : {}),
          function: {
            ...(t.function?.name ? { name: t.function.name } : {}),
            arguments: t.function?.arguments ?? "",
          },
        }));
      }
      return { index: d.index, delta, logprobs: null, finish_reason: finishReasonName(d.finishReason) };
    }),
    ...(includeUsage ? { usage: c.usage ? openAIUsage(c.usage) : null } : {}),
  };
}

/** The embeddings list object; `base64` packs each vector as little-endian float32 (what the OpenAI SDK asks for). */
export function toOpenAIEmbeddings(r: EmbedResponse, format: EmbeddingsBody["encoding_format"]) {
  return {
    object: "list",
    data: r.data.map((e) => ({
      object: "embedding",
      index: e.index,
      embedding: format === "base64" ? Buffer.from(new Float32Array(e.values).buffer).toString("base64") : e.values,
    })),
    model: r.model,
    usage: { prompt_tokens: r.usage?.inputTokens ?? 0, total_tokens: r.usage?.inputTokens ?? 0 },
  };
}
