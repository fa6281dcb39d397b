/**
 * A fake OpenAI-compatible upstream for tests and benchmarks: a plain node:http server on 127.0.0.1 speaking the
 * chat completions and embeddings wire formats (JSON, and SSE ending `data: [DONE]`) deterministically.
 *
 * Answers:
 * - text: the last user message, verbatim ("OK" when empty); after a tool result, `Tool result: <content>`.
 *   Streamed one word per chunk (a word keeps its trailing space).
 * - tool call: when tools are given and the tool choice forces one, or the last user message names a tool or says
 *   "tool". Arguments are built from the tool's JSON schema (strings "test", numbers 1, booleans true, enums their
 *   first value) unless the behaviour gives them. Streamed as id+name first, then arguments in 8-character pieces.
 * - usage: input = words in every message (text, tool arguments, tool results); output = chunks of the answer.
 *   `cachedTokens` of the input are reported as cached (OpenAI: prompt_tokens_details.cached_tokens).
 * - `stop` and `max_tokens` are honoured (finish_reason "stop" / "length").
 * - embeddings: unit vectors derived from a hash of each input (8 dimensions unless `dimensions` is asked),
 *   as floats or base64 per `encoding_format`; unrelated for any two different texts. With the `words`
 *   behaviour, bag-of-words vectors instead (256 dimensions unless asked), so texts sharing most words are close
 *   (see {@link wordsEmbedding}).
 * - moderations: one result per input, flagged for the behaviour's `moderationFlags` (nothing by default).
 *
 * Behaviours (failures, slowness, cuts) are set for the whole server (`setBehavior`), and per request, which wins:
 * by `+directives` after the model name (`gpt-4o+slow-20+cut-3`, see {@link parseModelDirectives}) or by an
 * `x-fake-behavior` header holding FakeBehavior JSON (which wins over both).
 */
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** What a fake upstream does with a request. Unset fields mean the normal deterministic answer. */
export interface FakeBehavior {
  /** Answer with this text instead of the echo. */
  text?: string;
  /**
   * Tool call answers: true forces one (when tools are given), false never, unset decides from the prompt.
   * An object forces one with this name and/or these arguments (JSON text).
   */
  toolCall?: boolean | { name?: string; arguments?: string };
  /** Fail with this HTTP status and the provider's error body (e.g. 400, 401, 404, 429, 500, 503, 529). */
  errorStatus?: number;
  /** The error body's message (default: the provider's usual text for the status). */
  errorMessage?: string;
  /** `retry-after` header value sent with a 429 (default "1"); "" sends none. */
  retryAfter?: string;
  /** `retry-after-ms` header sent with a 429 (OpenAI only). */
  retryAfterMs?: number;
  /** Wait this long before the response head (for timeout tests). */
  firstByteDelayMs?: number;
  /**
   * A slow tail: some requests wait `delayMs` before the response head (instead of `firstByteDelayMs`). With
   * `every: n`, exactly every n-th request the server receives (the n-th, 2n-th, …; deterministic, for tests);
   * with `fraction`, each request at random with that probability (for benchmarks).
   */
  slowTail?: { every?: number; fraction?: number; delayMs: number };
  /** Wait this long before each streamed event (and once before a non-streamed body). */
  chunkDelayMs?: number;
  /** Destroy the socket after this many streamed events, without the terminator (non-streamed: mid-body). */
  cutAfterChunks?: number;
  /** End the response cleanly after this many streamed events, without the terminator (a proxy cutting short). */
  truncateAfterChunks?: number;
  /**
   * Send the provider's in-stream error event after this many events, then end the stream (streamed requests
   * only; `errorStatus` then picks the error's type, default 500 / Anthropic 529 overloaded).
   */
  streamErrorAfterChunks?: number;
  /** Prompt tokens reported as read from the provider's cache (capped at the input count). */
  cachedTokens?: number;
  /** Anthropic only: prompt tokens reported as written to the cache (cache_creation_input_tokens). */
  cacheWriteTokens?: number;
  /** OpenAI `/moderations` only: the categories every input is flagged for (unset or empty: none). */
  moderationFlags?: string[];
  /**
   * OpenAI `/embeddings` only: "hash" (default) gives unrelated unit vectors for different texts, "words"
   * bag-of-words vectors where similar texts are similar ({@link wordsEmbedding}). Directive: `words`.
   */
  embedding?: "hash" | "words";
}

/** One request a fake upstream received. */
export interface RecordedRequest {
  method: string;
  /** Path and query, e.g. "/v1/chat/completions". */
  path: string;
  headers: IncomingHttpHeaders;
  /** The JSON body, parsed; undefined when empty or not JSON. */
  body: unknown;
  /** The client's port: equal for requests sent over one keep-alive connection. */
  remotePort: number;
  /**
   * Settles when the exchange ends: "finished" when the whole response was sent, "aborted" when the client closed
   * the connection first (e.g. the caller cancelled), "cut" when the fake cut it on purpose.
   */
  closed: Promise<"finished" | "aborted" | "cut">;
}

/** A running fake upstream. */
export interface FakeUpstream {
  /** Base URL to put in a catalog entry's `base_url` (OpenAI: ends with /v1; Anthropic: the origin). */
  url: string;
  port: number;
  /** Requests received, oldest first (empty when started with `record: false`). */
  requests: RecordedRequest[];
  /** Sets the server-wide behaviour (replacing the previous one); no argument restores normal answers. */
  setBehavior(behavior?: FakeBehavior): void;
  /** Forgets recorded requests and restores normal answers. */
  reset(): void;
  /** Stops listening and destroys open connections. */
  close(): Promise<void>;
}

export interface FakeUpstreamOptions {
  /** The initial server-wide behaviour. */
  behavior?: FakeBehavior;
  /** When set, requests without this key (Bearer / x-api-key) get the provider's 401. */
  apiKey?: string;
  /** Keep RecordedRequests (default true); benchmarks turn it off. */
  record?: boolean;
}

// ---------------------------------------------------------------------------------------------------------------
// Shared by both fakes (fake-anthropic.ts imports these).

/**
 * Reads behaviour directives from a model name: the part before the first "+" is the name, then any of
 * `tool`, `notool`, `words`, `error-<status>`, `retry-<seconds>`, `slow-<ms per chunk>`, `ttfb-<ms>`, `cut-<events>`, `truncate-<events>`,
 * `stream-error-<events>`, `cached-<tokens>`, `cache-write-<tokens>`. Unknown directives are ignored.
 */
export function parseModelDirectives(model: string): FakeBehavior {
  const out: FakeBehavior = {};
  const parts = model.split("+");
  for (let i = 1; i < parts.length; i++) {
    const d = parts[i]!;
    if (d === "tool") out.toolCall = true;
    else if (d === "notool") out.toolCall = false;
    else if (d === "words") out.embedding = "words";
    else {
      const m = /^([a-z-]+)-(\d+)$/.exec(d);
      if (m === null) continue;
      const n = Number(m[2]);
      switch (m[1]) {
        case "error":
          out.errorStatus = n;
          break;
        case "retry":
          out.retryAfter = String(n);
          break;
        case "slow":
          out.chunkDelayMs = n;
          break;
        case "ttfb":
          out.firstByteDelayMs = n;
          break;
        case "cut":
          out.cutAfterChunks = n;
          break;
        case "truncate":
          out.truncateAfterChunks = n;
          break;
        case "stream-error":
          out.streamErrorAfterChunks = n;
          break;
        case "cached":
          out.cachedTokens = n;
          break;
        case "cache-write":
          out.cacheWriteTokens = n;
          break;
      }
    }
  }
  return out;
}

/** The behaviour for one request: server-wide, then model directives, then the `x-fake-behavior` header. */
export function resolveBehavior(
  base: FakeBehavior,
  model: unknown,
  header: string | string[] | undefined,
): FakeBehavior {
  let b = base;
  if (typeof model === "string" && model.includes("+")) b = { ...b, ...parseModelDirectives(model) };
  const h = Array.isArray(header) ? header[0] : header;
  if (h !== undefined && h !== "") {
    try {
      b = { ...b, ...(JSON.parse(h) as FakeBehavior) };
    } catch {
      // A malformed header is a test bug; answering normally makes it visible in the test's assertions.
    }
  }
  return b;
}

/**
 * The fakes' token count: whitespace-separated words, except that every CJK character (and full-width form) is a
 * token of its own, as real tokenizers roughly count Chinese, Japanese and Korean.
 */
export function countWords(text: string): number {
  let n = 0;
  let inWord = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if ((c >= 0x3000 && c <= 0x9fff) || (c >= 0xac00 && c <= 0xd7af) || (c >= 0xff00 && c <= 0xffef)) {
      n++;
      inWord = false;
      continue;
    }
    const space = c === 32 || c === 10 || c === 13 || c === 9;
    if (!space && !inWord) n++;
    inWord = !space;
  }
  return n;
}

/** Splits an answer into stream pieces: one word each, a word keeping the whitespace after it. */
export function splitWords(text: string): string[] {
  return text.match(/\s*\S+\s*/g) ?? (text === "" ? [] : [text]);
}

/** Splits tool arguments into 8-character pieces, the way providers stream them in small fragments. */
export function splitArguments(args: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i += 8) out.push(args.slice(i, i + 8));
  return out;
}

export function sleep(ms: number | undefined): Promise<void> | undefined {
  return ms !== undefined && ms > 0 ? new Promise((r) => setTimeout(r, ms)) : undefined;
}

/** A tool as the fakes see it (both wire formats reduce to this). */
export interface FakeTool {
  name: string;
  parameters: unknown;
}

/** What the fake answers: text, or one tool call. */
export type FakeAnswer = { kind: "text"; text: string } | { kind: "tool"; id: string; name: string; arguments: string };

let callSeq = 0;

/** Example arguments for a JSON schema: strings "test", numbers 1, booleans true, enums their first value. */
function exampleArguments(schema: unknown): string {
  const props = (schema as { properties?: Record<string, { type?: unknown; enum?: unknown[] }> } | undefined)
    ?.properties;
  const args: Record<string, unknown> = {};
  for (const [name, p] of Object.entries(props ?? {})) {
    if (Array.isArray(p.enum) && p.enum.length > 0) args[name] = p.enum[0];
    else if (p.type === "number" || p.type === "integer") args[name] = 1;
    else if (p.type === "boolean") args[name] = true;
    else if (p.type === "array") args[name] = [];
    else if (p.type === "object") args[name] = {};
    else args[name] = "test";
  }
  return JSON.stringify(args);
}

/**
 * Decides the answer. `forced` is the tool the request's tool choice requires (a name, or "" for any tool);
 * `toolResult` the content of a tool result that ends the conversation, if one does.
 */
export function planAnswer(
  b: FakeBehavior,
  lastUserText: string,
  tools: FakeTool[],
  forced: string | undefined,
  toolResult: string | undefined,
  idPrefix: string,
): FakeAnswer {
  const override = typeof b.toolCall === "object" ? b.toolCall : undefined;
  let wantTool = false;
  if (tools.length > 0 && b.toolCall !== false) {
    if (b.toolCall !== undefined || forced !== undefined) wantTool = true;
    else if (toolResult === undefined) {
      const lower = lastUserText.toLowerCase();
      wantTool = lower.includes("tool") || tools.some((t) => t.name !== "" && lower.includes(t.name.toLowerCase()));
    }
  }
  if (!wantTool) {
    const text =
      b.text ??
      (toolResult !== undefined ? `Tool result: ${toolResult}` : lastUserText.trim() === "" ? "OK" : lastUserText);
    return { kind: "text", text };
  }
  const lower = lastUserText.toLowerCase();
  const tool =
    tools.find((t) => t.name === (override?.name ?? forced)) ??
    tools.find((t) => t.name !== "" && lower.includes(t.name.toLowerCase())) ??
    tools[0]!;
  return {
    kind: "tool",
    id: `${idPrefix}${(++callSeq).toString(36).padStart(6, "0")}`,
    name: override?.name ?? tool.name,
    arguments: override?.arguments ?? exampleArguments(tool.parameters),
  };
}

/** Truncates text pieces at the first stop sequence (or max tokens); tells which, if any, applied. */
export function applyLimits(
  pieces: string[],
  stop: string[],
  maxTokens: number | undefined,
): { pieces: string[]; stopped: "stop" | "length" | undefined; sequence?: string } {
  if (stop.length > 0) {
    let acc = "";
    for (let i = 0; i < pieces.length; i++) {
      const next = acc + pieces[i]!;
      for (const s of stop) {
        const at = s === "" ? -1 : next.indexOf(s);
        if (at !== -1) {
          const kept = pieces.slice(0, i);
          const rest = next.slice(acc.length, at);
          if (rest !== "") kept.push(rest);
          return limitLength(kept, maxTokens) ?? { pieces: kept, stopped: "stop", sequence: s };
        }
      }
      acc = next;
    }
  }
  return limitLength(pieces, maxTokens) ?? { pieces, stopped: undefined };
}

function limitLength(
  pieces: string[],
  maxTokens: number | undefined,
): { pieces: string[]; stopped: "length" } | undefined {
  if (maxTokens !== undefined && maxTokens >= 0 && pieces.length > maxTokens)
    return { pieces: pieces.slice(0, maxTokens), stopped: "length" };
  return undefined;
}

/** Everything a fake's handler needs for one request. */
export interface FakeContext {
  req: IncomingMessage;
  res: ServerResponse;
  body: unknown;
  /** Writes and resolves once the data is handed to the socket (or the socket is gone). */
  write(data: string): Promise<void>;
  /** False once the client went away: handlers stop writing. */
  alive(): boolean;
  /** Destroys the socket without finishing the response (a cut stream). */
  cut(): Promise<void>;
}

/** Starts the HTTP plumbing shared by the fakes: body reading, recording, close tracking, close(). */
export async function startFakeServer(
  handle: (ctx: FakeContext, behavior: FakeBehavior) => Promise<void>,
  options: FakeUpstreamOptions,
  urlPath: string,
): Promise<FakeUpstream> {
  let base: FakeBehavior = options.behavior ?? {};
  let received = 0;
  const record = options.record ?? true;
  const requests: RecordedRequest[] = [];

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      let body: unknown;
      if (chunks.length > 0) {
        try {
          body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
        } catch {
          body = undefined;
        }
      }
      let cutOnPurpose = false;
      let gone = false;
      let settle!: (v: "finished" | "aborted" | "cut") => void;
      const closed = new Promise<"finished" | "aborted" | "cut">((r) => (settle = r));
      res.on("close", () => {
        gone = true;
        settle(cutOnPurpose ? "cut" : res.writableFinished ? "finished" : "aborted");
      });
      if (record)
        requests.push({
          method: req.method ?? "",
          path: req.url ?? "",
          headers: req.headers,
          body,
          remotePort: req.socket.remotePort ?? 0,
          closed,
        });
      const ctx: FakeContext = {
        req,
        res,
        body,
        write: (data) => new Promise<void>((resolve) => (gone ? resolve() : res.write(data, () => resolve()))),
        alive: () => !gone,
        cut: async () => {
          cutOnPurpose = true;
          res.socket?.destroy();
        },
      };
      const model = typeof body === "object" && body !== null ? (body as { model?: unknown }).model : undefined;
      const behavior = { ...resolveBehavior(base, model, req.headers["x-fake-behavior"]) };
      received++;
      const tail = behavior.slowTail;
      if (
        tail !== undefined &&
        ((tail.every !== undefined && tail.every > 0 && received % tail.every === 0) ||
          (tail.every === undefined && Math.random() < (tail.fraction ?? 0)))
      ) {
        behavior.firstByteDelayMs = tail.delayMs;
      }
      handle(ctx, behavior).catch((err: unknown) => {
        if (!res.headersSent) {
          res.writeHead(500, { "content-type": "application/json" });
          res.end(JSON.stringify({ error: { message: `fake upstream failed: ${String(err)}`, type: "server_error" } }));
        } else res.destroy();
      });
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}${urlPath}`,
    port,
    requests,
    setBehavior(behavior?: FakeBehavior) {
      base = behavior ?? {};
    },
    reset() {
      requests.length = 0;
      base = {};
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** The `content-type` and, for SSE, the headers providers send with a stream. */
export const SSE_HEADERS = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache",
  connection: "keep-alive",
};

// ---------------------------------------------------------------------------------------------------------------
// OpenAI.

type OpenAIMsg = { role?: string; content?: unknown; tool_calls?: Array<{ function?: { arguments?: string } }> };

function openAIText(content: unknown): string {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content
      .map((p: { type?: string; text?: string }) => (p.type === "text" && typeof p.text === "string" ? p.text : ""))
      .join("");
  }
  return "";
}

const OPENAI_ERRORS: Record<number, { message: string; type: string; code: string | null }> = {
  400: { message: "Invalid request.", type: "invalid_request_error", code: null },
  401: {
    message:
      "Incorrect API key provided: sk-fake***. You can find your API key at https://platform.openai.com/account/api-keys.",
    type: "invalid_request_error",
    code: "invalid_api_key",
  },
  403: {
    message: "You are not allowed to access this model.",
    type: "invalid_request_error",
    code: "unsupported_country_region_territory",
  },
  404: {
    message: "The model does not exist or you do not have access to it.",
    type: "invalid_request_error",
    code: "model_not_found",
  },
  429: {
    message: "Rate limit reached for requests. Please try again in 1s.",
    type: "requests",
    code: "rate_limit_exceeded",
  },
  500: {
    message: "The server had an error while processing your request. Sorry about that!",
    type: "server_error",
    code: null,
  },
  503: { message: "The engine is currently overloaded, please try again later.", type: "server_error", code: null },
};

function sendOpenAIError(res: ServerResponse, status: number, b: FakeBehavior, model?: string): void {
  const known = OPENAI_ERRORS[status] ?? {
    message: `Error ${status}.`,
    type: status >= 500 ? "server_error" : "invalid_request_error",
    code: null,
  };
  let message = b.errorMessage ?? known.message;
  if (status === 404 && b.errorMessage === undefined && model !== undefined) {
    message = `The model \`${model}\` does not exist or you do not have access to it.`;
  }
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (status === 429) {
    const ra = b.retryAfter ?? "1";
    if (ra !== "") headers["retry-after"] = ra;
    if (b.retryAfterMs !== undefined) headers["retry-after-ms"] = String(b.retryAfterMs);
  }
  res.writeHead(status, headers);
  res.end(JSON.stringify({ error: { message, type: known.type, param: null, code: known.code } }));
}

/** Deterministic unit vector for a text: FNV-1a seeded per dimension. */
export function fakeEmbedding(text: string, dimensions: number): number[] {
  const v = new Array<number>(dimensions);
  let norm = 0;
  for (let d = 0; d < dimensions; d++) {
    let h = 0x811c9dc5 ^ d;
    for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
    const x = ((h >>> 0) / 0xffffffff) * 2 - 1;
    v[d] = x;
    norm += x * x;
  }
  const scale = norm > 0 ? 1 / Math.sqrt(norm) : 0;
  for (let d = 0; d < dimensions; d++) v[d] = v[d]! * scale;
  return v;
}

/**
 * Bag-of-words unit vector for a text: each word (lower-cased letters and digits; every CJK character a word of its
 * own) adds 1 to the dimension its FNV-1a hash picks. The cosine of two texts is about shared words over the
 * geometric mean of their word counts (collisions aside): "tell me the capital of france" and "please tell me the
 * capital of france" are ~0.93 apart, texts without a common word ~0. Deterministic, so tests can rely on it.
 */
export function wordsEmbedding(text: string, dimensions: number): number[] {
  const v = new Array<number>(dimensions).fill(0);
  for (const word of text
    .toLowerCase()
    .match(/[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}]|[\p{L}\p{N}]+/gu) ?? []) {
    let h = 0x811c9dc5;
    for (let i = 0; i < word.length; i++) h = Math.imul(h ^ word.charCodeAt(i), 0x01000193);
    v[(h >>> 0) % dimensions]! += 1;
  }
  const norm = Math.sqrt(v.reduce((n, x) => n + x * x, 0));
  return norm > 0 ? v.map((x) => x / norm) : v;
}

async function handleOpenAI(ctx: FakeContext, b: FakeBehavior, apiKey: string | undefined): Promise<void> {
  const { req, res } = ctx;
  const path = (req.url ?? "").split("?")[0]!;
  await sleep(b.firstByteDelayMs);
  if (!ctx.alive()) return;
  if (req.method === "GET" && path.endsWith("/models")) {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(
      JSON.stringify({
        object: "list",
        data: [{ id: "fake-model", object: "model", created: 1700000000, owned_by: "tokenmesh-fake" }],
      }),
    );
    return;
  }
  if (apiKey !== undefined && req.headers.authorization !== `Bearer ${apiKey}`) return sendOpenAIError(res, 401, {});
  const body = ctx.body as Record<string, unknown> | undefined;
  if (req.method !== "POST" || body === undefined || typeof body !== "object") {
    return sendOpenAIError(res, path.endsWith("/chat/completions") || path.endsWith("/embeddings") ? 400 : 404, {
      errorMessage: body === undefined ? "We could not parse the JSON body of your request." : `Unknown path ${path}`,
    });
  }
  const model = typeof body.model === "string" ? body.model : "";
  // With streamErrorAfterChunks, errorStatus picks the in-stream error's type instead of failing the request.
  if (b.errorStatus !== undefined && (b.streamErrorAfterChunks === undefined || body.stream !== true)) {
    return sendOpenAIError(res, b.errorStatus, b, model);
  }
  if (path.endsWith("/embeddings")) return openAIEmbeddings(ctx, b, body, model);
  if (path.endsWith("/chat/completions")) return openAIChat(ctx, b, body, model);
  if (path.endsWith("/moderations")) return openAIModerations(ctx, b, body, model);
  return sendOpenAIError(res, 404, { errorMessage: `Unknown path ${path}` });
}

async function openAIEmbeddings(
  ctx: FakeContext,
  b: FakeBehavior,
  body: Record<string, unknown>,
  model: string,
): Promise<void> {
  const inputs =
    typeof body.input === "string"
      ? [body.input]
      : Array.isArray(body.input)
        ? body.input.map((x) => (typeof x === "string" ? x : JSON.stringify(x)))
        : [];
  const words = b.embedding === "words";
  const dims = typeof body.dimensions === "number" && body.dimensions > 0 ? body.dimensions : words ? 256 : 8;
  const base64 = body.encoding_format === "base64";
  let tokens = 0;
  const data = inputs.map((text, index) => {
    tokens += countWords(text);
    const vector = words ? wordsEmbedding(text, dims) : fakeEmbedding(text, dims);
    return {
      object: "embedding",
      index,
      embedding: base64 ? Buffer.from(new Float32Array(vector).buffer).toString("base64") : vector,
    };
  });
  ctx.res.writeHead(200, { "content-type": "application/json" });
  ctx.res.end(JSON.stringify({ object: "list", data, model, usage: { prompt_tokens: tokens, total_tokens: tokens } }));
}

/** OpenAI's moderation categories (omni-moderation), each reported true or false in every result. */
const MODERATION_CATEGORIES = [
  "harassment",
  "harassment/threatening",
  "hate",
  "hate/threatening",
  "illicit",
  "illicit/violent",
  "self-harm",
  "self-harm/intent",
  "self-harm/instructions",
  "sexual",
  "sexual/minors",
  "violence",
  "violence/graphic",
];

async function openAIModerations(
  ctx: FakeContext,
  b: FakeBehavior,
  body: Record<string, unknown>,
  model: string,
): Promise<void> {
  const inputs = typeof body.input === "string" ? [body.input] : Array.isArray(body.input) ? body.input : [];
  const flags = new Set(b.moderationFlags ?? []);
  const names = [...new Set([...MODERATION_CATEGORIES, ...flags])];
  const results = inputs.map(() => ({
    flagged: flags.size > 0,
    categories: Object.fromEntries(names.map((c) => [c, flags.has(c)])),
    category_scores: Object.fromEntries(names.map((c) => [c, flags.has(c) ? 0.97 : 0.0001])),
  }));
  ctx.res.writeHead(200, { "content-type": "application/json" });
  ctx.res.end(
    JSON.stringify({ id: `modr-fake${(++callSeq).toString(36)}`, model: model || "omni-moderation-latest", results }),
  );
}

async function openAIChat(
  ctx: FakeContext,
  b: FakeBehavior,
  body: Record<string, unknown>,
  model: string,
): Promise<void> {
  const { res } = ctx;
  const messages = (Array.isArray(body.messages) ? body.messages : []) as OpenAIMsg[];
  let inputTokens = 0;
  let lastUser = "";
  for (const m of messages) {
    const text = openAIText(m.content);
    inputTokens += countWords(text);
    for (const tc of m.tool_calls ?? []) inputTokens += countWords(tc.function?.arguments ?? "");
    if (m.role === "user") lastUser = text;
  }
  const last = messages[messages.length - 1];
  const toolResult = last?.role === "tool" ? openAIText(last.content) : undefined;
  const tools: FakeTool[] = (Array.isArray(body.tools) ? body.tools : []).map(
    (t: { function?: { name?: string; parameters?: unknown } }) => ({
      name: t.function?.name ?? "",
      parameters: t.function?.parameters,
    }),
  );
  const tc = body.tool_choice as string | { function?: { name?: string } } | undefined;
  const forced = tc === "required" ? "" : typeof tc === "object" && tc !== null ? (tc.function?.name ?? "") : undefined;
  const answer =
    tc === "none"
      ? planAnswer({ ...b, toolCall: false }, lastUser, tools, undefined, toolResult, "call_")
      : planAnswer(b, lastUser, tools, forced, toolResult, "call_");

  const stop = typeof body.stop === "string" ? [body.stop] : Array.isArray(body.stop) ? (body.stop as string[]) : [];
  const maxTokens =
    typeof body.max_tokens === "number"
      ? body.max_tokens
      : typeof body.max_completion_tokens === "number"
        ? body.max_completion_tokens
        : undefined;
  const n = typeof body.n === "number" && body.n > 1 ? body.n : 1;

  let pieces: string[];
  let finish: string;
  if (answer.kind === "text") {
    const limited = applyLimits(splitWords(answer.text), stop, maxTokens);
    pieces = limited.pieces;
    finish = limited.stopped === "length" ? "length" : "stop";
  } else {
    pieces = splitArguments(answer.arguments);
    finish = "tool_calls";
  }
  const outputTokens = (answer.kind === "tool" ? pieces.length + 1 : pieces.length) * n;
  const cached = Math.min(b.cachedTokens ?? 0, inputTokens);
  const usage = {
    prompt_tokens: inputTokens,
    completion_tokens: outputTokens,
    total_tokens: inputTokens + outputTokens,
    prompt_tokens_details: { cached_tokens: cached, audio_tokens: 0 },
    completion_tokens_details: {
      reasoning_tokens: 0,
      audio_tokens: 0,
      accepted_prediction_tokens: 0,
      rejected_prediction_tokens: 0,
    },
  };
  const id = `chatcmpl-fake${(++callSeq).toString(36)}`;
  const created = Math.floor(Date.now() / 1000);
  const baseModel = model.split("+")[0]!;

  if (body.stream !== true) {
    await sleep(b.chunkDelayMs);
    const message =
      answer.kind === "text"
        ? { role: "assistant", content: pieces.join(""), refusal: null, annotations: [] }
        : {
            role: "assistant",
            content: null,
            refusal: null,
            annotations: [],
            tool_calls: [
              { id: answer.id, type: "function", function: { name: answer.name, arguments: answer.arguments } },
            ],
          };
    const choices = [];
    for (let i = 0; i < n; i++) choices.push({ index: i, message, logprobs: null, finish_reason: finish });
    const json = JSON.stringify({
      id,
      object: "chat.completion",
      created,
      model: baseModel,
      choices,
      usage,
      service_tier: "default",
      system_fingerprint: "fp_fake",
    });
    if (!ctx.alive()) return;
    if (b.cutAfterChunks !== undefined) {
      res.writeHead(200, { "content-type": "application/json", "content-length": String(Buffer.byteLength(json)) });
      await ctx.write(json.slice(0, json.length >> 1));
      return ctx.cut();
    }
    res.writeHead(200, { "content-type": "application/json" });
    res.end(json);
    return;
  }

  const includeUsage = (body.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true;
  const head = `data: {"id":"${id}","object":"chat.completion.chunk","created":${created},"model":${JSON.stringify(baseModel)},"service_tier":"default","system_fingerprint":"fp_fake","choices":[`;
  const tail = includeUsage ? `],"usage":null}\n\n` : `]}\n\n`;
  const events: string[] = [];
  for (let i = 0; i < n; i++) {
    const choice = (delta: string, finishReason: string | null): string =>
      `${head}{"index":${i},"delta":${delta},"logprobs":null,"finish_reason":${finishReason === null ? "null" : `"${finishReason}"`}}${tail}`;
    if (answer.kind === "text") {
      events.push(choice(`{"role":"assistant","content":"","refusal":null}`, null));
      for (const p of pieces) events.push(choice(`{"content":${JSON.stringify(p)}}`, null));
    } else {
      events.push(
        choice(
          `{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"${answer.id}","type":"function","function":{"name":${JSON.stringify(answer.name)},"arguments":""}}],"refusal":null}`,
          null,
        ),
      );
      for (const p of pieces)
        events.push(choice(`{"tool_calls":[{"index":0,"function":{"arguments":${JSON.stringify(p)}}}]}`, null));
    }
    events.push(choice("{}", finish));
  }
  if (includeUsage) {
    events.push(`${head}],"usage":${JSON.stringify(usage)}}\n\n`);
  }
  events.push("data: [DONE]\n\n");

  res.writeHead(200, SSE_HEADERS);
  res.flushHeaders();
  await sendEvents(ctx, b, events, () => {
    const status = b.errorStatus ?? 500;
    const known = OPENAI_ERRORS[status] ?? OPENAI_ERRORS[500]!;
    return `data: ${JSON.stringify({ error: { message: b.errorMessage ?? known.message, type: known.type, param: null, code: known.code } })}\n\n`;
  });
}

/**
 * Writes SSE events with the behaviour's pacing and failures: a delay before each event, the socket destroyed
 * after `cutAfterChunks` events, a clean end without the terminator after `truncateAfterChunks`, or the
 * provider's in-stream error event after `streamErrorAfterChunks`. Ends the response unless the socket was cut.
 */
export async function sendEvents(
  ctx: FakeContext,
  b: FakeBehavior,
  events: string[],
  errorEvent: () => string,
): Promise<void> {
  const res = ctx.res;
  for (let i = 0; i < events.length; i++) {
    if (b.cutAfterChunks !== undefined && i >= b.cutAfterChunks) return ctx.cut();
    if (b.truncateAfterChunks !== undefined && i >= b.truncateAfterChunks) break;
    if (b.streamErrorAfterChunks !== undefined && i >= b.streamErrorAfterChunks) {
      await ctx.write(errorEvent());
      break;
    }
    const wait = sleep(b.chunkDelayMs);
    if (wait !== undefined) await wait;
    if (!ctx.alive()) return;
    await ctx.write(events[i]!);
  }
  res.end();
}

/**
 * Starts a fake OpenAI upstream on a free 127.0.0.1 port. `url` ends with `/v1` (use it as `base_url`); it serves
 * POST `<any>/chat/completions`, POST `<any>/embeddings` and GET `<any>/models`.
 */
export function startFakeOpenAI(options: FakeUpstreamOptions = {}): Promise<FakeUpstream> {
  return startFakeServer((ctx, b) => handleOpenAI(ctx, b, options.apiKey), options, "/v1");
}
