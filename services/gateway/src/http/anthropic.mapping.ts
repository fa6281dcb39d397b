import {
  type ChatChunk,
  type ChatMessage,
  type ChatRequest,
  type ChatResponse,
  type ContentPart,
  FinishReason,
  ResponseFormatType,
  Role,
  type Tool,
  type ToolCall,
  type ToolChoice,
  ToolChoiceMode,
  type Usage,
} from "@tokenmesh/proto/common/v1/chat";
import { AppError, toHttpError } from "@tokenmesh/runtime";
import { estimateMessageTokens, estimateTextTokens } from "@tokenmesh/tokens";
import type { AnthropicMessageParam, ContentBlock, CountTokensBody, MessagesBody } from "./anthropic.schema.js";

// The one translator between Anthropic's Messages API and the mesh's ChatRequest / ChatChunk / ChatResponse, request
// and stream alike. What the proto cannot carry is listed where it is dropped:
// - cache_control (prompt caching breakpoints) on any block or tool: accepted, not forwarded;
// - thinking / redacted_thinking blocks replayed in assistant turns, and the `thinking` option: accepted, dropped;
// - output_config.effort: dropped (output_config.format is carried as a JSON-schema response format);
// - a system turn inside `messages` keeps its place for other models; an Anthropic upstream gets it in `system`;
// - several system blocks become several system messages (an Anthropic upstream gets them joined by blank lines);
// - the order of text and tool_use blocks within one assistant turn (text first, then the calls);
// - text citations; images inside tool_result (refused, not dropped);
// - on the way back: which stop sequence matched (stop_reason `stop_sequence` comes back as `end_turn`), and cache
//   writes (counted in input_tokens; cache_creation_input_tokens is 0).

function invalid(message: string, param: string): AppError {
  return new AppError("INVALID_ARGUMENT", message, { param, reason: "invalid_value" });
}

function chatMessage(role: Role, m: Partial<ChatMessage>): ChatMessage {
  return { role, content: "", parts: [], name: "", toolCalls: [], toolCallId: "", refusal: "", ...m };
}

function imagePart(block: Extract<ContentBlock, { type: "image" }>): ContentPart {
  const s = block.source;
  // A data URL is how the proto carries inline images; the Anthropic adapter turns it back into a base64 source.
  const url = s.type === "base64" ? `data:${s.media_type};base64,${s.data}` : s.url;
  return { imageUrl: { url, detail: "" } };
}

/** Text and image blocks as parts; a lone text block as plain content (the smaller, canonical form). */
function userContent(parts: ContentPart[]): Partial<ChatMessage> {
  if (parts.length === 1 && parts[0]!.text !== undefined) return { content: parts[0]!.text };
  return { parts };
}

function toolResultMessage(b: Extract<ContentBlock, { type: "tool_result" }>, param: string): ChatMessage {
  let content = "";
  if (typeof b.content === "string") content = b.content;
  else {
    for (const [k, part] of (b.content ?? []).entries()) {
      if (part.type === "image") {
        throw invalid(
          "images inside tool_result are not supported: not every model takes them; send the image in a user text turn",
          `${param}.content.${k}`,
        );
      }
      content += part.text;
    }
  }
  return chatMessage(Role.ROLE_TOOL, {
    content,
    toolCallId: b.tool_use_id,
    ...(b.is_error === true ? { isError: true } : {}),
  });
}

const ROLES = { user: Role.ROLE_USER, assistant: Role.ROLE_ASSISTANT, system: Role.ROLE_SYSTEM } as const;

/**
 * One Anthropic turn as mesh messages. A system turn is a system message per text block. A user turn's tool_result blocks become tool messages (in place, so text
 * around them keeps its order); its text and images one user message per run of them. An assistant turn becomes one
 * message: text blocks joined as its content, tool_use blocks as its tool calls (input as JSON text).
 */
function toMessages(m: AnthropicMessageParam, i: number): ChatMessage[] {
  if (typeof m.content === "string") {
    return [chatMessage(ROLES[m.role], { content: m.content })];
  }
  const param = (j: number) => `messages.${i}.content.${j}`;
  if (m.role === "system") {
    return m.content.map((b, j) => {
      if (b.type !== "text") throw invalid(`a system turn holds text blocks only, not ${b.type}`, `${param(j)}.type`);
      return chatMessage(Role.ROLE_SYSTEM, { content: b.text });
    });
  }
  if (m.role === "assistant") {
    let content = "";
    const toolCalls: ToolCall[] = [];
    m.content.forEach((b, j) => {
      switch (b.type) {
        case "text":
          content += b.text;
          return;
        case "tool_use":
          toolCalls.push({
            id: b.id,
            type: "function",
            function: { name: b.name, arguments: JSON.stringify(b.input) },
          });
          return;
        case "thinking":
        case "redacted_thinking":
          return;
        default:
          throw invalid(`an assistant turn cannot hold ${b.type} blocks`, `${param(j)}.type`);
      }
    });
    return [chatMessage(Role.ROLE_ASSISTANT, { content, toolCalls })];
  }
  const out: ChatMessage[] = [];
  let parts: ContentPart[] = [];
  const flush = () => {
    if (parts.length > 0) out.push(chatMessage(Role.ROLE_USER, userContent(parts)));
    parts = [];
  };
  m.content.forEach((b, j) => {
    switch (b.type) {
      case "text":
        parts.push({ text: b.text });
        return;
      case "image":
        parts.push(imagePart(b));
        return;
      case "tool_result":
        flush();
        out.push(toolResultMessage(b, param(j)));
        return;
      default:
        throw invalid(`a user turn cannot hold ${b.type} blocks`, `${param(j)}.type`);
    }
  });
  flush();
  return out;
}

function systemMessages(system: MessagesBody["system"]): ChatMessage[] {
  if (system === undefined) return [];
  if (typeof system === "string") return system === "" ? [] : [chatMessage(Role.ROLE_SYSTEM, { content: system })];
  return system.filter((b) => b.text !== "").map((b) => chatMessage(Role.ROLE_SYSTEM, { content: b.text }));
}

function tools(b: CountTokensBody): Tool[] {
  return (b.tools ?? []).map((t) => ({
    type: "function",
    function: { name: t.name, description: t.description ?? "", parameters: t.input_schema },
  }));
}

function toolChoice(c: CountTokensBody["tool_choice"]): ToolChoice | undefined {
  switch (c?.type) {
    case undefined:
      return undefined;
    case "auto":
      return { mode: ToolChoiceMode.TOOL_CHOICE_MODE_AUTO };
    case "any":
      return { mode: ToolChoiceMode.TOOL_CHOICE_MODE_REQUIRED };
    case "none":
      return { mode: ToolChoiceMode.TOOL_CHOICE_MODE_NONE };
    case "tool":
      return { functionName: c.name };
  }
}

/** The conversation of a Messages (or count_tokens) body as mesh messages: system first, then every turn. */
export function toChatMessages(b: CountTokensBody): ChatMessage[] {
  return [...systemMessages(b.system), ...b.messages.flatMap(toMessages)];
}

/**
 * Maps a validated Messages body to the mesh's ChatRequest. `metadata.user_id` becomes the request's user;
 * `disable_parallel_tool_use` becomes `parallel_tool_calls: false`; usage is always asked for (message_delta
 * reports it).
 */
export function toChatRequest(b: MessagesBody): ChatRequest {
  const choice = b.tool_choice;
  const disableParallel = choice !== undefined && choice.type !== "none" && choice.disable_parallel_tool_use === true;
  return {
    model: b.model,
    messages: toChatMessages(b),
    tools: tools(b),
    toolChoice: toolChoice(choice),
    ...(disableParallel ? { parallelToolCalls: false } : {}),
    responseFormat: b.output_config?.format
      ? {
          type: ResponseFormatType.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
          jsonSchema: { name: "output", description: "", schema: b.output_config.format.schema, strict: true },
        }
      : undefined,
    ...(b.temperature !== undefined ? { temperature: b.temperature } : {}),
    ...(b.top_p !== undefined ? { topP: b.top_p } : {}),
    ...(b.top_k !== undefined ? { topK: b.top_k } : {}),
    maxTokens: b.max_tokens,
    stop: b.stop_sequences ?? [],
    n: 1,
    user: b.metadata?.user_id ?? "",
    stream: b.stream === true,
    streamOptions: { includeUsage: true },
    metadata: {},
  };
}

/**
 * An estimate of a prompt's input tokens with the mesh's estimator (no remote model's tokenizer is at hand): the
 * messages with their chat-format overhead and images, plus the tool definitions as JSON.
 */
export function estimateInputTokens(b: CountTokensBody): number {
  const defs = tools(b);
  return estimateMessageTokens(toChatMessages(b)) + (defs.length > 0 ? estimateTextTokens(JSON.stringify(defs)) : 0);
}

// ---------------------------------------------------------------------------------------------------------------
// Responses

export type StopReason = "end_turn" | "max_tokens" | "stop_sequence" | "tool_use" | "refusal";

/**
 * Anthropic's stop_reason for a finish reason. A stop with tool calls is `tool_use` (OpenAI answers a forced tool
 * call with `stop`, and Anthropic clients loop on `tool_use`); a content-filter finish is `refusal`.
 */
export function stopReason(finish: FinishReason, hasToolCalls: boolean): StopReason {
  switch (finish) {
    case FinishReason.FINISH_REASON_LENGTH:
      return "max_tokens";
    case FinishReason.FINISH_REASON_TOOL_CALLS:
      return "tool_use";
    case FinishReason.FINISH_REASON_CONTENT_FILTER:
      return "refusal";
    default:
      return hasToolCalls ? "tool_use" : "end_turn";
  }
}

/**
 * Anthropic's usage: its `input_tokens` leaves out cache reads (ours counts every prompt token). Cache writes are
 * not told apart by the mesh, so they stay in input_tokens.
 */
export function anthropicUsage(u: Usage | undefined) {
  const cached = u?.cachedTokens ?? 0;
  return {
    input_tokens: Math.max(0, (u?.inputTokens ?? 0) - cached),
    output_tokens: u?.outputTokens ?? 0,
    cache_creation_input_tokens: 0,
    cache_read_input_tokens: cached,
  };
}

/** The message id for a request: the minted request id with `msg_` in place of `req_`, so the two correlate. */
export function messageId(requestId: string): string {
  return `msg_${requestId.replace(/^req_/, "")}`;
}

/** A tool call's arguments as the `input` object Anthropic promises; text that is not a JSON object gives `{}`. */
function toolInput(args: string): Record<string, unknown> {
  try {
    const v: unknown = JSON.parse(args);
    return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** The `message` object for a whole (non-streamed) answer: text (and any refusal) first, then tool_use blocks. */
export function toAnthropicMessage(r: ChatResponse, requestId: string) {
  const choice = r.choices[0];
  const m = choice?.message;
  const content: Array<Record<string, unknown>> = [];
  const text = (m?.content ?? "") + (m?.refusal ?? "");
  if (text !== "") content.push({ type: "text", text });
  for (const tc of m?.toolCalls ?? []) {
    content.push({
      type: "tool_use",
      id: tc.id,
      name: tc.function?.name ?? "",
      input: toolInput(tc.function?.arguments ?? ""),
    });
  }
  const toolCalls = (m?.toolCalls.length ?? 0) > 0;
  const reason = m?.refusal
    ? "refusal"
    : stopReason(choice?.finishReason ?? FinishReason.FINISH_REASON_STOP, toolCalls);
  return {
    id: messageId(requestId),
    type: "message",
    role: "assistant",
    model: r.model,
    content,
    stop_reason: reason,
    stop_sequence: null,
    usage: anthropicUsage(r.usage),
  };
}

/** One server-sent event: its `event:` name and its data (whose `type` repeats the name, as Anthropic sends). */
export interface AnthropicEvent {
  event: string;
  data: Record<string, unknown>;
}

const ev = (type: string, data: Record<string, unknown> = {}): AnthropicEvent => ({
  event: type,
  data: { type, ...data },
});

/** The SSE text of an event. */
export function sse(e: AnthropicEvent): string {
  return `event: ${e.event}\ndata: ${JSON.stringify(e.data)}\n\n`;
}

type OpenBlock = { kind: "text" } | { kind: "tool"; tool: number };

/**
 * Turns the mesh's chunk stream into Anthropic's event sequence: `message_start` and a `ping` before the first
 * content; each run of text one `text` block (`text_delta`s) and each tool call one `tool_use` block
 * (`input_json_delta`s of its argument text), every block closed by `content_block_stop` before the next opens;
 * then `message_delta` with the stop reason and the whole usage, and `message_stop`. Only choice 0 is read (the
 * endpoint asks for one). Blocks are indexed 0, 1, … in the order they open.
 */
export class MessagesStreamTranslator {
  private started = false;
  private open: OpenBlock | undefined;
  private nextIndex = 0;
  private readonly toolBlocks = new Map<number, number>();
  private finish = FinishReason.FINISH_REASON_UNSPECIFIED;
  private refused = false;
  private usage: Usage | undefined;

  constructor(private readonly id: string) {}

  /** Events for one chunk (the first chunk also starts the message). */
  push(chunk: ChatChunk): AnthropicEvent[] {
    const out = this.start(chunk);
    if (chunk.usage) this.usage = chunk.usage;
    for (const d of chunk.choices) {
      if (d.index !== 0) continue;
      const text = d.content + d.refusal;
      if (d.refusal) this.refused = true;
      if (text !== "") {
        if (this.open?.kind !== "text") {
          this.close(out);
          out.push(ev("content_block_start", { index: this.nextIndex, content_block: { type: "text", text: "" } }));
          this.open = { kind: "text" };
          this.nextIndex++;
        }
        out.push(ev("content_block_delta", { index: this.nextIndex - 1, delta: { type: "text_delta", text } }));
      }
      for (const t of d.toolCalls) {
        let index = this.toolBlocks.get(t.index);
        if (index === undefined) {
          this.close(out);
          index = this.nextIndex++;
          this.toolBlocks.set(t.index, index);
          this.open = { kind: "tool", tool: t.index };
          out.push(
            ev("content_block_start", {
              index,
              content_block: { type: "tool_use", id: t.id, name: t.function?.name ?? "", input: {} },
            }),
          );
        }
        const args = t.function?.arguments ?? "";
        if (args !== "") {
          out.push(ev("content_block_delta", { index, delta: { type: "input_json_delta", partial_json: args } }));
        }
      }
      if (d.finishReason !== FinishReason.FINISH_REASON_UNSPECIFIED) {
        this.finish = d.finishReason;
        this.close(out);
      }
    }
    return out;
  }

  /** The closing events of a stream that ended normally. */
  end(): AnthropicEvent[] {
    const out = this.start(undefined);
    this.close(out);
    const reason = this.refused ? "refusal" : stopReason(this.finish, this.toolBlocks.size > 0);
    out.push(
      ev("message_delta", {
        delta: { stop_reason: reason, stop_sequence: null },
        usage: anthropicUsage(this.usage),
      }),
    );
    out.push(ev("message_stop"));
    return out;
  }

  private start(first: ChatChunk | undefined): AnthropicEvent[] {
    if (this.started) return [];
    this.started = true;
    // Input tokens are known at the end (message_delta carries the whole usage); a chunk that already has usage
    // (a cached or non-streamed upstream answer) gives them now.
    const usage = anthropicUsage(first?.usage);
    return [
      ev("message_start", {
        message: {
          id: this.id,
          type: "message",
          role: "assistant",
          model: first?.model ?? "",
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: { ...usage, output_tokens: 0 },
        },
      }),
      ev("ping"),
    ];
  }

  private close(out: AnthropicEvent[]): void {
    if (this.open === undefined) return;
    const index = this.open.kind === "tool" ? this.toolBlocks.get(this.open.tool)! : this.nextIndex - 1;
    out.push(ev("content_block_stop", { index }));
    this.open = undefined;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Errors

export type AnthropicErrorType =
  | "invalid_request_error"
  | "authentication_error"
  | "permission_error"
  | "not_found_error"
  | "request_too_large"
  | "rate_limit_error"
  | "api_error"
  | "timeout_error"
  | "overloaded_error";

/**
 * Anthropic's error type for an HTTP status the gateway answers with (the statuses are the OpenAI endpoint's, so
 * dashboards and alerts read both alike): 503 (no backend could take the request) is `overloaded_error`, which
 * Anthropic's clients retry like its 529.
 */
export function errorType(status: number): AnthropicErrorType {
  switch (status) {
    case 400:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 413:
      return "request_too_large";
    case 429:
      return "rate_limit_error";
    case 503:
      return "overloaded_error";
    case 504:
      return "timeout_error";
    default:
      return "api_error";
  }
}

/**
 * An error as Anthropic sends it: the status and headers the gateway uses for it (retry-after included) and the body
 * `{ type: "error", error: { type, message }, request_id }`.
 */
export function toAnthropicError(err: unknown, requestId: string, status?: number) {
  const mapped = toHttpError(err, requestId);
  const code = status ?? mapped.status;
  return {
    status: code,
    headers: mapped.headers,
    error: mapped.error,
    body: {
      type: "error" as const,
      error: { type: errorType(code), message: mapped.error.message },
      request_id: requestId,
    },
  };
}

/** The `error` event that ends a stream which broke after its first byte (never followed by message_stop). */
export function errorEvent(err: unknown, requestId: string): AnthropicEvent {
  const { body } = toAnthropicError(err, requestId);
  return { event: "error", data: body };
}
