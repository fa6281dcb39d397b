/**
 * A fake Anthropic upstream for tests and benchmarks: a plain node:http server on 127.0.0.1 speaking the Messages
 * API (JSON, and SSE with `event:` lines: message_start, content_block_start/delta/stop, ping, message_delta,
 * message_stop, error) deterministically.
 *
 * Answers, usage, stop sequences / max_tokens and behaviours work as in the fake OpenAI upstream (see
 * fake-openai.ts), with Anthropic's shapes: a tool call is a `tool_use` block (its input streamed as
 * `input_json_delta` pieces), stop reasons are end_turn / stop_sequence / max_tokens / tool_use, and usage reports
 * `input_tokens` excluding cache reads (`cache_read_input_tokens` = cachedTokens) and writes
 * (`cache_creation_input_tokens` = cacheWriteTokens). Requests must carry `anthropic-version` and `max_tokens`
 * (400 otherwise), as the real API demands. Also serves POST /v1/messages/count_tokens.
 */
import type { ServerResponse } from "node:http";
import {
  applyLimits,
  countWords,
  type FakeBehavior,
  type FakeContext,
  type FakeTool,
  type FakeUpstream,
  type FakeUpstreamOptions,
  planAnswer,
  SSE_HEADERS,
  sendEvents,
  sleep,
  splitArguments,
  splitWords,
  startFakeServer,
} from "./fake-openai.js";

type Block = { type?: string; text?: string; input?: unknown; content?: unknown };
type Msg = { role?: string; content?: string | Block[] };

const ANTHROPIC_ERRORS: Record<number, { type: string; message: string }> = {
  400: { type: "invalid_request_error", message: "Invalid request." },
  401: { type: "authentication_error", message: "invalid x-api-key" },
  403: { type: "permission_error", message: "Your API key does not have permission to use the specified resource." },
  404: { type: "not_found_error", message: "Not found." },
  413: { type: "request_too_large", message: "Request exceeds the maximum allowed number of bytes." },
  429: { type: "rate_limit_error", message: "Number of request tokens has exceeded your per-minute rate limit." },
  500: { type: "api_error", message: "Internal server error" },
  503: { type: "api_error", message: "Service unavailable" },
  529: { type: "overloaded_error", message: "Overloaded" },
};

let seq = 0;
const nextId = (prefix: string): string => `${prefix}${(++seq).toString(36).padStart(8, "0")}`;

function errorJson(status: number, b: FakeBehavior, fallbackMessage?: string): string {
  const known = ANTHROPIC_ERRORS[status] ?? {
    type: status >= 500 ? "api_error" : "invalid_request_error",
    message: `Error ${status}`,
  };
  return JSON.stringify({
    type: "error",
    error: { type: known.type, message: b.errorMessage ?? fallbackMessage ?? known.message },
    request_id: nextId("req_fake"),
  });
}

function sendError(res: ServerResponse, status: number, b: FakeBehavior, fallbackMessage?: string): void {
  const headers: Record<string, string> = { "content-type": "application/json", "request-id": nextId("req_fake") };
  if (status === 429) {
    const ra = b.retryAfter ?? "1";
    if (ra !== "") headers["retry-after"] = ra;
  }
  res.writeHead(status, headers);
  res.end(errorJson(status, b, fallbackMessage));
}

function blocksText(content: unknown): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  let out = "";
  for (const b of content as Block[]) if (b.type === "text" && typeof b.text === "string") out += b.text;
  return out;
}

/** Words the fake counts as input: system, text blocks, tool_use inputs and tool_result contents. */
function inputWords(system: unknown, messages: Msg[]): number {
  let n = countWords(blocksText(system));
  for (const m of messages) {
    if (typeof m.content === "string") {
      n += countWords(m.content);
      continue;
    }
    for (const b of m.content ?? []) {
      if (b.type === "text") n += countWords(b.text ?? "");
      else if (b.type === "tool_use") n += countWords(JSON.stringify(b.input ?? {}));
      else if (b.type === "tool_result") n += countWords(blocksText(b.content));
    }
  }
  return n;
}

const event = (name: string, data: unknown): string => `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;

async function handleAnthropic(ctx: FakeContext, b: FakeBehavior, apiKey: string | undefined): Promise<void> {
  const { req, res } = ctx;
  const path = (req.url ?? "").split("?")[0]!;
  await sleep(b.firstByteDelayMs);
  if (!ctx.alive()) return;
  if (apiKey !== undefined && req.headers["x-api-key"] !== apiKey) return sendError(res, 401, {});
  if (req.headers["anthropic-version"] === undefined)
    return sendError(res, 400, {}, "anthropic-version: header is required");
  const body = ctx.body as Record<string, unknown> | undefined;
  if (req.method !== "POST" || (!path.endsWith("/v1/messages") && !path.endsWith("/v1/messages/count_tokens"))) {
    return sendError(res, 404, {}, `Not found: ${path}`);
  }
  if (body === undefined || typeof body !== "object")
    return sendError(res, 400, {}, "There was an error parsing the body of your request.");
  const model = typeof body.model === "string" ? body.model : "";
  const messages = (Array.isArray(body.messages) ? body.messages : []) as Msg[];
  const totalInput = inputWords(body.system, messages);
  if (path.endsWith("/count_tokens")) {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ input_tokens: totalInput }));
    return;
  }
  const stream = body.stream === true;
  if (b.errorStatus !== undefined && (b.streamErrorAfterChunks === undefined || !stream))
    return sendError(res, b.errorStatus, b);
  if (typeof body.max_tokens !== "number") return sendError(res, 400, {}, "max_tokens: Field required");

  let lastUser = "";
  let toolResult: string | undefined;
  for (const m of messages) if (m.role === "user") lastUser = blocksText(m.content);
  const last = messages[messages.length - 1];
  if (last?.role === "user" && Array.isArray(last.content)) {
    const results = last.content.filter((x) => x.type === "tool_result");
    if (results.length > 0) toolResult = blocksText(results[results.length - 1]!.content);
  }
  const tools: FakeTool[] = (Array.isArray(body.tools) ? body.tools : []).map(
    (t: { name?: string; input_schema?: unknown }) => ({
      name: t.name ?? "",
      parameters: t.input_schema,
    }),
  );
  const tc = body.tool_choice as { type?: string; name?: string } | undefined;
  const forced = tc?.type === "any" ? "" : tc?.type === "tool" ? (tc.name ?? "") : undefined;
  const answer = planAnswer(
    tc?.type === "none" ? { ...b, toolCall: false } : b,
    lastUser,
    tools,
    forced,
    toolResult,
    "toolu_fake",
  );

  const stop = Array.isArray(body.stop_sequences) ? (body.stop_sequences as string[]) : [];
  let pieces: string[];
  let stopReason: string;
  let stopSequence: string | null = null;
  if (answer.kind === "text") {
    const limited = applyLimits(splitWords(answer.text), stop, body.max_tokens);
    pieces = limited.pieces;
    stopReason =
      limited.stopped === "length" ? "max_tokens" : limited.stopped === "stop" ? "stop_sequence" : "end_turn";
    if (limited.stopped === "stop") stopSequence = limited.sequence ?? null;
  } else {
    pieces = splitArguments(answer.arguments);
    stopReason = "tool_use";
  }
  const outputTokens = answer.kind === "tool" ? pieces.length + 1 : pieces.length;
  const cacheRead = Math.min(b.cachedTokens ?? 0, totalInput);
  const cacheWrite = Math.min(b.cacheWriteTokens ?? 0, totalInput - cacheRead);
  const usage = {
    input_tokens: totalInput - cacheRead - cacheWrite,
    cache_creation_input_tokens: cacheWrite,
    cache_read_input_tokens: cacheRead,
    output_tokens: outputTokens,
    service_tier: "standard",
  };
  const id = nextId("msg_fake");
  const baseModel = model.split("+")[0]!;

  if (!stream) {
    await sleep(b.chunkDelayMs);
    const content =
      answer.kind === "text"
        ? [{ type: "text", text: pieces.join("") }]
        : [{ type: "tool_use", id: answer.id, name: answer.name, input: JSON.parse(answer.arguments) as unknown }];
    const json = JSON.stringify({
      id,
      type: "message",
      role: "assistant",
      model: baseModel,
      content,
      stop_reason: stopReason,
      stop_sequence: stopSequence,
      usage,
    });
    if (!ctx.alive()) return;
    if (b.cutAfterChunks !== undefined) {
      res.writeHead(200, { "content-type": "application/json", "content-length": String(Buffer.byteLength(json)) });
      await ctx.write(json.slice(0, json.length >> 1));
      return ctx.cut();
    }
    res.writeHead(200, { "content-type": "application/json", "request-id": nextId("req_fake") });
    res.end(json);
    return;
  }

  const events: string[] = [
    event("message_start", {
      type: "message_start",
      message: {
        id,
        type: "message",
        role: "assistant",
        model: baseModel,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: { ...usage, output_tokens: 1 },
      },
    }),
  ];
  if (answer.kind === "text") {
    events.push(
      event("content_block_start", {
        type: "content_block_start",
        index: 0,
        content_block: { type: "text", text: "" },
      }),
    );
    events.push(event("ping", { type: "ping" }));
    for (const p of pieces)
      events.push(
        event("content_block_delta", { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: p } }),
      );
  } else {
    events.push(
      event("content_block_start", {
        type: "content_block_start",
        index: 0,
        content_block: { type: "tool_use", id: answer.id, name: answer.name, input: {} },
      }),
    );
    events.push(event("ping", { type: "ping" }));
    for (const p of pieces) {
      events.push(
        event("content_block_delta", {
          type: "content_block_delta",
          index: 0,
          delta: { type: "input_json_delta", partial_json: p },
        }),
      );
    }
  }
  events.push(event("content_block_stop", { type: "content_block_stop", index: 0 }));
  events.push(
    event("message_delta", {
      type: "message_delta",
      delta: { stop_reason: stopReason, stop_sequence: stopSequence },
      usage: { output_tokens: outputTokens },
    }),
  );
  events.push(event("message_stop", { type: "message_stop" }));

  res.writeHead(200, { ...SSE_HEADERS, "request-id": nextId("req_fake") });
  res.flushHeaders();
  await sendEvents(ctx, b, events, () => `event: error\ndata: ${errorJson(b.errorStatus ?? 529, b)}\n\n`);
}

/**
 * Starts a fake Anthropic upstream on a free 127.0.0.1 port. `url` is the origin (use it as `base_url`); it serves
 * POST /v1/messages and POST /v1/messages/count_tokens.
 */
export function startFakeAnthropic(options: FakeUpstreamOptions = {}): Promise<FakeUpstream> {
  return startFakeServer((ctx, b) => handleAnthropic(ctx, b, options.apiKey), options, "");
}
