import type { AnthropicModelEntry } from "@tokenmesh/catalog";
import {
  type ChatChunk,
  type ChatMessage,
  type ChatRequest,
  FinishReason,
  ResponseFormatType,
  Role,
  ToolChoiceMode,
  type Usage,
} from "@tokenmesh/proto/common/v1/chat";
import { AppError } from "@tokenmesh/runtime";
import { delta, usage as makeUsage } from "../http/chunks.js";
import type {
  AnthropicContentBlock,
  AnthropicImageSource,
  AnthropicMessage,
  AnthropicResponseMessage,
  AnthropicToolChoice,
  AnthropicUsage,
} from "./anthropic.types.js";

function invalid(message: string, param: string): AppError {
  return new AppError("INVALID_ARGUMENT", message, { param, retryable: false });
}

const DATA_URL = /^data:([^;,]+);base64,/;

/** An image URL as an Anthropic source: `data:` URLs become base64 sources, anything else a URL source. */
export function toImageSource(url: string): AnthropicImageSource {
  const m = DATA_URL.exec(url);
  if (m !== null) return { type: "base64", media_type: m[1]!, data: url.slice(m[0].length) };
  return { type: "url", url };
}

function textOf(m: ChatMessage): string {
  if (m.parts.length === 0) return m.content;
  return m.parts.map((p) => p.text ?? "").join("");
}

function parseArguments(args: string, param: string): unknown {
  if (args.trim() === "") return {};
  try {
    return JSON.parse(args);
  } catch {
    throw invalid("tool call arguments must be JSON to be sent to an Anthropic model", param);
  }
}

/**
 * Splits a conversation into Anthropic's top-level `system` text and user/assistant turns: system and developer
 * messages join the system text; assistant tool calls become `tool_use` blocks; tool messages become `tool_result`
 * blocks in a user turn; consecutive turns of one role are merged (Anthropic requires alternation in practice,
 * e.g. several tool results answering one assistant turn).
 */
export function toAnthropicMessages(messages: readonly ChatMessage[]): {
  system: string | undefined;
  messages: AnthropicMessage[];
} {
  const system: string[] = [];
  const turns: Array<{ role: "user" | "assistant"; blocks: AnthropicContentBlock[] }> = [];
  const push = (role: "user" | "assistant", blocks: AnthropicContentBlock[]): void => {
    const last = turns[turns.length - 1];
    if (last !== undefined && last.role === role) last.blocks.push(...blocks);
    else turns.push({ role, blocks });
  };
  messages.forEach((m, i) => {
    switch (m.role) {
      case Role.ROLE_SYSTEM:
      case Role.ROLE_DEVELOPER: {
        const text = textOf(m);
        if (text !== "") system.push(text);
        return;
      }
      case Role.ROLE_USER: {
        if (m.parts.length === 0) {
          push("user", [{ type: "text", text: m.content }]);
          return;
        }
        push(
          "user",
          m.parts.map(
            (p): AnthropicContentBlock =>
              p.imageUrl !== undefined
                ? { type: "image", source: toImageSource(p.imageUrl.url) }
                : { type: "text", text: p.text ?? "" },
          ),
        );
        return;
      }
      case Role.ROLE_ASSISTANT: {
        const blocks: AnthropicContentBlock[] = [];
        // Anthropic rejects empty text blocks, which an assistant turn that only calls tools would produce.
        const text = textOf(m);
        if (text !== "") blocks.push({ type: "text", text });
        m.toolCalls.forEach((tc, j) => {
          blocks.push({
            type: "tool_use",
            id: tc.id,
            name: tc.function?.name ?? "",
            input: parseArguments(tc.function?.arguments ?? "", `messages[${i}].tool_calls[${j}].function.arguments`),
          });
        });
        if (blocks.length > 0) push("assistant", blocks);
        return;
      }
      case Role.ROLE_TOOL:
        push("user", [
          {
            type: "tool_result",
            tool_use_id: m.toolCallId,
            content: textOf(m),
            ...(m.isError === true ? { is_error: true } : {}),
          },
        ]);
        return;
      default:
        throw invalid(`messages[${i}] has no valid role`, `messages[${i}].role`);
    }
  });
  return {
    system: system.length > 0 ? system.join("\n\n") : undefined,
    // A lone text block is sent as a plain string: the smaller, canonical form.
    messages: turns.map((t) => ({
      role: t.role,
      content: t.blocks.length === 1 && t.blocks[0]!.type === "text" ? t.blocks[0]!.text : t.blocks,
    })),
  };
}

function toToolChoice(req: ChatRequest): AnthropicToolChoice | undefined {
  const tc = req.toolChoice;
  let choice: AnthropicToolChoice | undefined;
  if (tc?.functionName !== undefined && tc.functionName !== "") choice = { type: "tool", name: tc.functionName };
  else if (tc?.mode === ToolChoiceMode.TOOL_CHOICE_MODE_NONE) choice = { type: "none" };
  else if (tc?.mode === ToolChoiceMode.TOOL_CHOICE_MODE_REQUIRED) choice = { type: "any" };
  else if (tc?.mode === ToolChoiceMode.TOOL_CHOICE_MODE_AUTO) choice = { type: "auto" };
  if (req.parallelToolCalls === false && choice?.type !== "none") {
    choice = { ...(choice ?? { type: "auto" }), disable_parallel_tool_use: true };
  }
  return choice;
}

/**
 * Builds the Messages API body. `max_tokens` is required by Anthropic: the request's, else the entry's
 * `max_output_tokens`. Temperature is clamped to Anthropic's 0–1 range (OpenAI's is 0–2) so a fallback from an
 * OpenAI model keeps working. Options Anthropic lacks are dropped when they are hints (seed, penalties) and
 * rejected (INVALID_ARGUMENT) when they are promises about the output (n > 1, JSON response formats).
 */
export function toAnthropicRequest(
  entry: AnthropicModelEntry,
  req: ChatRequest,
  stream: boolean,
): Record<string, unknown> {
  if (req.n > 1) throw invalid("Anthropic models return one choice: n must be 1", "n");
  const rf = req.responseFormat?.type;
  if (
    rf === ResponseFormatType.RESPONSE_FORMAT_TYPE_JSON_OBJECT ||
    rf === ResponseFormatType.RESPONSE_FORMAT_TYPE_JSON_SCHEMA
  ) {
    throw invalid("response_format json_object / json_schema is not supported by Anthropic models", "response_format");
  }
  const { system, messages } = toAnthropicMessages(req.messages);
  const body: Record<string, unknown> = {
    model: entry.upstream_model,
    max_tokens: req.maxTokens ?? entry.max_output_tokens,
    messages,
  };
  if (system !== undefined) body.system = system;
  if (req.tools.length > 0) {
    body.tools = req.tools.map((t) => {
      const tool: Record<string, unknown> = {
        name: t.function?.name ?? "",
        input_schema: t.function?.parameters ?? { type: "object", properties: {} },
      };
      if (t.function?.description) tool.description = t.function.description;
      return tool;
    });
  }
  const choice = toToolChoice(req);
  // Anthropic refuses tool_choice without tools.
  if (choice !== undefined && req.tools.length > 0) body.tool_choice = choice;
  if (req.stop.length > 0) body.stop_sequences = req.stop;
  if (req.temperature !== undefined) body.temperature = Math.min(1, Math.max(0, req.temperature));
  if (req.topP !== undefined) body.top_p = req.topP;
  if (req.topK !== undefined) body.top_k = req.topK;
  if (req.user !== "") body.metadata = { user_id: req.user };
  if (stream) body.stream = true;
  return body;
}

/** end_turn / stop_sequence / pause_turn → stop, max_tokens → length, tool_use → tool_calls, refusal → content_filter. */
export function mapStopReason(reason: string | null | undefined): FinishReason {
  switch (reason) {
    case "end_turn":
    case "stop_sequence":
    case "pause_turn":
      return FinishReason.FINISH_REASON_STOP;
    case "max_tokens":
    case "model_context_window_exceeded":
      return FinishReason.FINISH_REASON_LENGTH;
    case "tool_use":
      return FinishReason.FINISH_REASON_TOOL_CALLS;
    case "refusal":
      return FinishReason.FINISH_REASON_CONTENT_FILTER;
    default:
      return FinishReason.FINISH_REASON_UNSPECIFIED;
  }
}

/**
 * Anthropic's `input_tokens` excludes cache writes and reads; ours counts every prompt token, with cache reads
 * also reported as `cachedTokens`.
 */
export function mapUsage(u: AnthropicUsage): Usage {
  const cacheRead = u.cache_read_input_tokens ?? 0;
  return makeUsage(
    (u.input_tokens ?? 0) + (u.cache_creation_input_tokens ?? 0) + cacheRead,
    u.output_tokens ?? 0,
    cacheRead,
  );
}

/** Maps a non-streaming message to one chunk holding the full answer (text joined, tool_use → tool calls). */
export function fromAnthropicMessage(msg: AnthropicResponseMessage, fallbackModel: string, created: number): ChatChunk {
  let content = "";
  const toolCalls: ChatChunk["choices"][number]["toolCalls"] = [];
  for (const block of msg.content ?? []) {
    if (block.type === "text") content += block.text ?? "";
    else if (block.type === "tool_use") {
      toolCalls.push({
        index: toolCalls.length,
        id: block.id ?? "",
        type: "function",
        function: { name: block.name ?? "", arguments: JSON.stringify(block.input ?? {}) },
      });
    }
  }
  return {
    id: msg.id ?? "",
    created,
    model: msg.model || fallbackModel,
    choices: [delta({ role: Role.ROLE_ASSISTANT, content, toolCalls, finishReason: mapStopReason(msg.stop_reason) })],
  };
}
