import type { OpenAIModelEntry } from "@tokenmesh/catalog";
import {
  type ChatChunk,
  type ChatMessage,
  type ChatRequest,
  type EmbedRequest,
  type EmbedResponse,
  FinishReason,
  ResponseFormatType,
  Role,
  type ToolCallDelta,
  ToolChoiceMode,
  type Usage,
} from "@tokenmesh/proto/common/v1/chat";
import { AppError } from "@tokenmesh/runtime";
import { delta, usage as makeUsage } from "../http/chunks.js";
import type {
  OpenAIChatCompletion,
  OpenAIChatCompletionChunk,
  OpenAIContentPart,
  OpenAIEmbeddingResponse,
  OpenAIMessage,
  OpenAIUsage,
} from "./openai.types.js";

const ROLE_NAMES: Record<Role, OpenAIMessage["role"] | undefined> = {
  [Role.ROLE_UNSPECIFIED]: undefined,
  [Role.ROLE_SYSTEM]: "system",
  [Role.ROLE_DEVELOPER]: "developer",
  [Role.ROLE_USER]: "user",
  [Role.ROLE_ASSISTANT]: "assistant",
  [Role.ROLE_TOOL]: "tool",
};

/** Maps one chat message to its OpenAI form; a message without a role is rejected (INVALID_ARGUMENT). */
export function toOpenAIMessage(m: ChatMessage, i: number): OpenAIMessage {
  const role = ROLE_NAMES[m.role];
  if (role === undefined) {
    throw new AppError("INVALID_ARGUMENT", `messages[${i}] has no valid role`, {
      param: `messages[${i}].role`,
      retryable: false,
    });
  }
  let content: OpenAIMessage["content"];
  if (m.parts.length > 0) {
    content = m.parts.map((p): OpenAIContentPart => {
      if (p.imageUrl !== undefined) {
        return {
          type: "image_url",
          image_url: p.imageUrl.detail ? { url: p.imageUrl.url, detail: p.imageUrl.detail } : { url: p.imageUrl.url },
        };
      }
      return { type: "text", text: p.text ?? "" };
    });
  } else {
    // OpenAI wants null, not "", for an assistant turn that only calls tools.
    content = m.content === "" && role === "assistant" && m.toolCalls.length > 0 ? null : m.content;
  }
  const out: OpenAIMessage = { role, content };
  if (m.name !== "") out.name = m.name;
  if (m.toolCalls.length > 0) {
    out.tool_calls = m.toolCalls.map((tc) => ({
      id: tc.id,
      type: "function",
      function: { name: tc.function?.name ?? "", arguments: tc.function?.arguments ?? "" },
    }));
  }
  if (m.toolCallId !== "") out.tool_call_id = m.toolCallId;
  if (m.refusal !== "" && role === "assistant") out.refusal = m.refusal;
  return out;
}

/**
 * Builds the OpenAI chat completions body for a request. Only fields the caller set are sent (so the provider's
 * defaults apply); `model` is the entry's upstream name. When streaming, `stream_options.include_usage` is always
 * sent so the final usage is the provider's exact count.
 */
export function toOpenAIRequest(entry: OpenAIModelEntry, req: ChatRequest, stream: boolean): Record<string, unknown> {
  const body: Record<string, unknown> = {
    model: entry.upstream_model,
    messages: req.messages.map(toOpenAIMessage),
  };
  if (req.tools.length > 0) {
    body.tools = req.tools.map((t) => {
      const fn: Record<string, unknown> = { name: t.function?.name ?? "" };
      if (t.function?.description) fn.description = t.function.description;
      if (t.function?.parameters !== undefined) fn.parameters = t.function.parameters;
      if (t.function?.strict !== undefined) fn.strict = t.function.strict;
      return { type: "function", function: fn };
    });
    // OpenAI refuses parallel_tool_calls without tools.
    if (req.parallelToolCalls !== undefined) body.parallel_tool_calls = req.parallelToolCalls;
  }
  const tc = req.toolChoice;
  if (tc?.functionName !== undefined && tc.functionName !== "") {
    body.tool_choice = { type: "function", function: { name: tc.functionName } };
  } else if (tc?.mode !== undefined) {
    const mode = {
      [ToolChoiceMode.TOOL_CHOICE_MODE_NONE]: "none",
      [ToolChoiceMode.TOOL_CHOICE_MODE_AUTO]: "auto",
      [ToolChoiceMode.TOOL_CHOICE_MODE_REQUIRED]: "required",
    }[tc.mode as number];
    if (mode !== undefined) body.tool_choice = mode;
  }
  const rf = req.responseFormat;
  if (rf !== undefined) {
    if (rf.type === ResponseFormatType.RESPONSE_FORMAT_TYPE_JSON_OBJECT) body.response_format = { type: "json_object" };
    else if (rf.type === ResponseFormatType.RESPONSE_FORMAT_TYPE_TEXT) body.response_format = { type: "text" };
    else if (rf.type === ResponseFormatType.RESPONSE_FORMAT_TYPE_JSON_SCHEMA) {
      const js = rf.jsonSchema;
      const schema: Record<string, unknown> = { name: js?.name || "response" };
      if (js?.description) schema.description = js.description;
      if (js?.schema !== undefined) schema.schema = js.schema;
      if (js?.strict !== undefined) schema.strict = js.strict;
      body.response_format = { type: "json_schema", json_schema: schema };
    }
  }
  if (req.temperature !== undefined) body.temperature = req.temperature;
  if (req.topP !== undefined) body.top_p = req.topP;
  if (req.maxTokens !== undefined) body.max_tokens = req.maxTokens;
  if (req.stop.length > 0) body.stop = req.stop;
  if (req.seed !== undefined) body.seed = req.seed;
  if (req.n > 1) body.n = req.n;
  if (req.user !== "") body.user = req.user;
  if (req.presencePenalty !== undefined) body.presence_penalty = req.presencePenalty;
  if (req.frequencyPenalty !== undefined) body.frequency_penalty = req.frequencyPenalty;
  if (stream) {
    body.stream = true;
    body.stream_options = { include_usage: true };
  }
  return body;
}

/** OpenAI finish_reason → proto; the legacy "function_call" counts as tool_calls. */
export function mapFinishReason(reason: string | null | undefined): FinishReason {
  switch (reason) {
    case "stop":
      return FinishReason.FINISH_REASON_STOP;
    case "length":
      return FinishReason.FINISH_REASON_LENGTH;
    case "tool_calls":
    case "function_call":
      return FinishReason.FINISH_REASON_TOOL_CALLS;
    case "content_filter":
      return FinishReason.FINISH_REASON_CONTENT_FILTER;
    default:
      return FinishReason.FINISH_REASON_UNSPECIFIED;
  }
}

/** prompt_tokens → input, completion_tokens → output, prompt_tokens_details.cached_tokens → cached. */
export function mapUsage(u: OpenAIUsage): Usage {
  return makeUsage(u.prompt_tokens ?? 0, u.completion_tokens ?? 0, u.prompt_tokens_details?.cached_tokens ?? 0);
}

function roleOf(role: string | undefined): Role {
  return role === "assistant" ? Role.ROLE_ASSISTANT : Role.ROLE_UNSPECIFIED;
}

/**
 * Maps one streamed chunk to a ChatChunk with its choices only (usage is returned apart, so the engine can put it
 * in the final chunk). Returns no chunk when there is no choice to forward (e.g. the usage-only chunk).
 */
export function fromOpenAIChunk(
  c: OpenAIChatCompletionChunk,
  fallbackModel: string,
  created: number,
): ChatChunk | undefined {
  const choices = c.choices ?? [];
  if (choices.length === 0) return undefined;
  return {
    id: c.id ?? "",
    created: c.created ?? created,
    model: c.model || fallbackModel,
    choices: choices.map((ch) => {
      const d = ch.delta ?? {};
      const toolCalls: ToolCallDelta[] = (d.tool_calls ?? []).map((t, j) => ({
        index: t.index ?? j,
        id: t.id ?? "",
        type: t.type ?? "",
        function: { name: t.function?.name ?? "", arguments: t.function?.arguments ?? "" },
      }));
      return delta({
        index: ch.index ?? 0,
        role: roleOf(d.role),
        content: d.content ?? "",
        toolCalls,
        finishReason: mapFinishReason(ch.finish_reason),
        refusal: d.refusal ?? "",
      });
    }),
  };
}

/** Maps a non-streaming completion to one chunk holding every choice's full message (usage is mapped apart). */
export function fromOpenAICompletion(c: OpenAIChatCompletion, fallbackModel: string, created: number): ChatChunk {
  return {
    id: c.id ?? "",
    created: c.created ?? created,
    model: c.model || fallbackModel,
    choices: (c.choices ?? []).map((ch, i) => {
      const m = ch.message ?? {};
      return delta({
        index: ch.index ?? i,
        role: Role.ROLE_ASSISTANT,
        content: m.content ?? "",
        toolCalls: (m.tool_calls ?? []).map((t, j) => ({
          index: j,
          id: t.id ?? "",
          type: t.type ?? "function",
          function: { name: t.function?.name ?? "", arguments: t.function?.arguments ?? "" },
        })),
        finishReason: mapFinishReason(ch.finish_reason),
        refusal: m.refusal ?? "",
      });
    }),
  };
}

/** Builds the OpenAI embeddings body (floats, not base64, so the answer is plain JSON numbers). */
export function toOpenAIEmbedRequest(entry: OpenAIModelEntry, req: EmbedRequest): Record<string, unknown> {
  const body: Record<string, unknown> = { model: entry.upstream_model, input: req.input, encoding_format: "float" };
  if (req.dimensions !== undefined) body.dimensions = req.dimensions;
  if (req.user !== "") body.user = req.user;
  return body;
}

export function fromOpenAIEmbedResponse(r: OpenAIEmbeddingResponse, fallbackModel: string): EmbedResponse {
  return {
    model: r.model || fallbackModel,
    data: (r.data ?? []).map((d, i) => ({ index: d.index ?? i, values: d.embedding ?? [] })),
    usage: makeUsage(r.usage?.prompt_tokens ?? 0, 0, 0),
  };
}
