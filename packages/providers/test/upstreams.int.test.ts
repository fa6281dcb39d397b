import { type AnthropicModelEntry, ModelEntrySchema, type OpenAIModelEntry } from "@tokenmesh/catalog";
import { type ChatChunk, ChatRequest, EmbedRequest, FinishReason, Role } from "@tokenmesh/proto/common/v1/chat";
import type { AppError } from "@tokenmesh/runtime";
import { startTelemetry, stopTelemetry, withSpan } from "@tokenmesh/telemetry";
import { type FakeUpstream, startFakeAnthropic, startFakeOpenAI } from "@tokenmesh/testing";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { AnthropicEngine, OpenAIEngine, type ProviderEngine, UpstreamHttpClient } from "../src/index.js";

// What the provider contract suite (provider-contract.int.test.ts) does not cover: each provider's wire details
// (headers, bodies, cached tokens, tool round trips, embeddings), connection reuse, key handling, timeouts,
// the remaining status mappings and in-stream error events.

const OPENAI_KEY = "sk-test-openai";
const ANTHROPIC_KEY = "sk-ant-test";
const secrets: Record<string, string> = { FAKE_OPENAI_KEY: OPENAI_KEY, FAKE_ANTHROPIC_KEY: ANTHROPIC_KEY };

let fakeOpenAI: FakeUpstream;
let fakeAnthropic: FakeUpstream;
let http: UpstreamHttpClient;
let openai: OpenAIEngine;
let anthropic: AnthropicEngine;

function openAIEntry(overrides: Record<string, unknown> = {}): OpenAIModelEntry {
  return ModelEntrySchema.parse({
    id: "gpt-test",
    engine: "openai",
    base_url: fakeOpenAI.url,
    api_key_env: "FAKE_OPENAI_KEY",
    upstream_model: "gpt-test-upstream",
    headers: { "x-extra": "1" },
    ...overrides,
  }) as OpenAIModelEntry;
}

function anthropicEntry(overrides: Record<string, unknown> = {}): AnthropicModelEntry {
  return ModelEntrySchema.parse({
    id: "claude-test",
    engine: "anthropic",
    base_url: fakeAnthropic.url,
    api_key_env: "FAKE_ANTHROPIC_KEY",
    upstream_model: "claude-test-upstream",
    max_output_tokens: 512,
    ...overrides,
  }) as AnthropicModelEntry;
}

const weatherTool = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Weather for a city",
    parameters: {
      type: "object",
      properties: { city: { type: "string" }, unit: { type: "string", enum: ["c", "f"] } },
      required: ["city"],
    },
  },
};

function chat(text: string, extra: Partial<ChatRequest> = {}): ChatRequest {
  return ChatRequest.fromPartial({
    model: "m",
    messages: [
      { role: Role.ROLE_SYSTEM, content: "Be brief." },
      { role: Role.ROLE_USER, content: text },
    ],
    ...extra,
  });
}

async function collect(
  engine: ProviderEngine,
  model: OpenAIModelEntry | AnthropicModelEntry,
  request: ChatRequest,
  signal = new AbortController().signal,
): Promise<ChatChunk[]> {
  const out: ChatChunk[] = [];
  for await (const c of engine.generate({ requestId: "r1", model, request, signal })) out.push(c);
  return out;
}

async function failure(p: Promise<unknown>): Promise<AppError> {
  try {
    await p;
  } catch (err) {
    return err as AppError;
  }
  throw new Error("expected a failure");
}

/** Folds chunks into the answer a client would see (choice 0). */
function fold(chunks: ChatChunk[]) {
  let content = "";
  let finish = FinishReason.FINISH_REASON_UNSPECIFIED;
  const tools: Array<{ id: string; name: string; arguments: string }> = [];
  for (const c of chunks) {
    for (const d of c.choices) {
      if (d.index !== 0) continue;
      content += d.content;
      if (d.finishReason !== FinishReason.FINISH_REASON_UNSPECIFIED) finish = d.finishReason;
      for (const t of d.toolCalls) {
        tools[t.index] ??= { id: "", name: "", arguments: "" };
        const slot = tools[t.index]!;
        if (t.id) slot.id = t.id;
        if (t.function?.name) slot.name = t.function.name;
        slot.arguments += t.function?.arguments ?? "";
      }
    }
  }
  const last = chunks[chunks.length - 1];
  return { content, finish, tools, usage: last?.usage, lastHasChoices: (last?.choices.length ?? 0) > 0 };
}

beforeAll(async () => {
  // As in a service without an exporter: spans are not recorded, yet carry real ids that propagate.
  await startTelemetry();
  fakeOpenAI = await startFakeOpenAI({ apiKey: OPENAI_KEY });
  fakeAnthropic = await startFakeAnthropic({ apiKey: ANTHROPIC_KEY });
  http = new UpstreamHttpClient();
  openai = new OpenAIEngine({ getSecret: (n) => secrets[n], http });
  anthropic = new AnthropicEngine({ getSecret: (n) => secrets[n], http });
});

afterAll(async () => {
  await openai?.close();
  await anthropic?.close();
  await http?.close();
  await fakeOpenAI?.close();
  await fakeAnthropic?.close();
  await stopTelemetry();
});

beforeEach(() => {
  fakeOpenAI.reset();
  fakeAnthropic.reset();
});

describe("OpenAIEngine", () => {
  it("streams a text answer and ends with a usage-only chunk", async () => {
    const chunks = await collect(
      openai,
      openAIEntry(),
      chat("hello there world", { stream: true, temperature: 0.2, maxTokens: 50, stop: ["zzz"] }),
    );
    const r = fold(chunks);
    expect(r.content).toBe("hello there world");
    expect(r.finish).toBe(FinishReason.FINISH_REASON_STOP);
    expect(r.lastHasChoices).toBe(false);
    expect(r.usage).toEqual({ inputTokens: 5, outputTokens: 3, cachedTokens: 0 });
    expect(chunks[0]!.choices[0]!.role).toBe(Role.ROLE_ASSISTANT);
    expect(chunks[0]!.model).toBe("gpt-test-upstream");

    const req = fakeOpenAI.requests[0]!;
    expect(req.path).toBe("/v1/chat/completions");
    expect(req.headers.authorization).toBe(`Bearer ${OPENAI_KEY}`);
    expect(req.headers["x-extra"]).toBe("1");
    expect(req.body).toMatchObject({
      model: "gpt-test-upstream",
      stream: true,
      stream_options: { include_usage: true },
      temperature: 0.2,
      max_tokens: 50,
      stop: ["zzz"],
      messages: [
        { role: "system", content: "Be brief." },
        { role: "user", content: "hello there world" },
      ],
    });
    expect(await req.closed).toBe("finished");
  });

  it("calls the upstream without streaming when the request does not stream", async () => {
    const r = fold(await collect(openai, openAIEntry(), chat("one two", { stream: false })));
    expect(r.usage).toEqual({ inputTokens: 4, outputTokens: 2, cachedTokens: 0 });
    expect((fakeOpenAI.requests[0]!.body as Record<string, unknown>).stream).toBeUndefined();
  });

  it("reports cached prompt tokens", async () => {
    const r = fold(
      await collect(openai, openAIEntry({ upstream_model: "gpt-x+cached-3" }), chat("a b c d", { stream: true })),
    );
    expect(r.usage).toEqual({ inputTokens: 6, outputTokens: 4, cachedTokens: 3 });
  });

  it("reuses keep-alive connections for consecutive requests, streamed or not", async () => {
    for (let i = 0; i < 6; i++) await collect(openai, openAIEntry(), chat(`request ${i}`, { stream: i % 2 === 0 }));
    // undici frees a connection a tick after its body ends, so back-to-back requests may alternate between two.
    const ports = new Set(fakeOpenAI.requests.map((r) => r.remotePort));
    expect(ports.size).toBeLessThanOrEqual(2);
  });

  it("embeds through /embeddings", async () => {
    const res = await openai.embed({
      requestId: "e1",
      model: openAIEntry({ kind: "embedding" }),
      request: EmbedRequest.fromPartial({ input: ["alpha beta", "gamma"], dimensions: 4 }),
      signal: new AbortController().signal,
    });
    expect(res.data.map((d) => d.index)).toEqual([0, 1]);
    expect(res.data[0]!.values).toHaveLength(4);
    expect(res.usage?.inputTokens).toBe(3);
    expect(fakeOpenAI.requests[0]!.path).toBe("/v1/embeddings");
  });
});

describe("trace context", () => {
  it("sends each exchange's own span upstream as W3C traceparent, in the caller's trace", async () => {
    const parent = await withSpan("caller", {}, async (span) => {
      await collect(openai, openAIEntry(), chat("hi", { stream: true }));
      await collect(anthropic, anthropicEntry(), chat("hi"));
      return span.spanContext();
    });
    const sent = [fakeOpenAI.requests[0]!, fakeAnthropic.requests[0]!].map((r) => String(r.headers.traceparent));
    for (const tp of sent) {
      const [, traceId, spanId] = tp.split("-");
      expect(traceId).toBe(parent.traceId);
      // The exchange's CLIENT span, a child of the caller's, not the caller's own id.
      expect(spanId).toMatch(/^[0-9a-f]{16}$/);
      expect(spanId).not.toBe(parent.spanId);
    }
    expect(sent[0]).not.toBe(sent[1]);
  });
});

describe("AnthropicEngine", () => {
  it("streams a text answer with Messages API headers and body", async () => {
    const chunks = await collect(
      anthropic,
      anthropicEntry(),
      chat("hi from test", { stream: true, temperature: 1.7, stop: ["END"] }),
    );
    const r = fold(chunks);
    expect(r.content).toBe("hi from test");
    expect(r.finish).toBe(FinishReason.FINISH_REASON_STOP);
    expect(r.lastHasChoices).toBe(false);
    expect(r.usage).toEqual({ inputTokens: 5, outputTokens: 3, cachedTokens: 0 });

    const req = fakeAnthropic.requests[0]!;
    expect(req.path).toBe("/v1/messages");
    expect(req.headers["x-api-key"]).toBe(ANTHROPIC_KEY);
    expect(req.headers["anthropic-version"]).toBe("2023-06-01");
    expect(req.body).toEqual({
      model: "claude-test-upstream",
      max_tokens: 512,
      system: "Be brief.",
      messages: [{ role: "user", content: "hi from test" }],
      stop_sequences: ["END"],
      temperature: 1,
      stream: true,
    });
  });

  it("answers without streaming, stopping at max_tokens", async () => {
    const r = fold(await collect(anthropic, anthropicEntry(), chat("x y z w", { stream: false, maxTokens: 2 })));
    expect(r.content).toBe("x y ");
    expect(r.finish).toBe(FinishReason.FINISH_REASON_LENGTH);
    expect(r.usage).toEqual({ inputTokens: 6, outputTokens: 2, cachedTokens: 0 });
  });

  it("sends a tool round trip as tool_use and tool_result blocks and an image as a base64 source", async () => {
    const request = ChatRequest.fromPartial({
      stream: true,
      tools: [weatherTool],
      messages: [
        {
          role: Role.ROLE_USER,
          parts: [{ text: "look" }, { imageUrl: { url: "data:image/png;base64,iVBORw0KGgo=", detail: "" } }],
        },
        {
          role: Role.ROLE_ASSISTANT,
          toolCalls: [
            { id: "toolu_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Oslo"}' } },
          ],
        },
        { role: Role.ROLE_TOOL, toolCallId: "toolu_1", content: "sunny" },
      ],
    });
    const r = fold(await collect(anthropic, anthropicEntry(), request));
    expect(r.content).toBe("Tool result: sunny");
    expect((fakeAnthropic.requests[0]!.body as { messages: unknown }).messages).toEqual([
      {
        role: "user",
        content: [
          { type: "text", text: "look" },
          { type: "image", source: { type: "base64", media_type: "image/png", data: "iVBORw0KGgo=" } },
        ],
      },
      {
        role: "assistant",
        content: [{ type: "tool_use", id: "toolu_1", name: "get_weather", input: { city: "Oslo" } }],
      },
      { role: "user", content: [{ type: "tool_result", tool_use_id: "toolu_1", content: "sunny" }] },
    ]);
  });

  it("counts cache reads and writes as input and cache reads as cached", async () => {
    const r = fold(
      await collect(
        anthropic,
        anthropicEntry({ upstream_model: "claude+cached-2+cache-write-1" }),
        chat("a b c d", { stream: true }),
      ),
    );
    expect(r.usage).toEqual({ inputTokens: 6, outputTokens: 4, cachedTokens: 2 });
    const n = fold(
      await collect(anthropic, anthropicEntry({ upstream_model: "claude+cached-2+cache-write-1" }), chat("a b c d")),
    );
    expect(n.usage).toEqual({ inputTokens: 6, outputTokens: 4, cachedTokens: 2 });
  });

  it("refuses embeddings", async () => {
    const err = await failure(
      anthropic.embed({
        requestId: "e",
        model: anthropicEntry(),
        request: EmbedRequest.fromPartial({ input: ["x"] }),
        signal: new AbortController().signal,
      }),
    );
    expect(err.code).toBe("INVALID_ARGUMENT");
  });
});

describe("upstream error mapping", () => {
  // 400, 401, 429 and 503 are contract cases; these are the other statuses providers answer with.
  const cases: Array<[string, number, string, boolean]> = [
    ["openai", 403, "PERMISSION_DENIED", false],
    ["openai", 404, "NOT_FOUND", false],
    ["openai", 500, "UNAVAILABLE", true],
    ["anthropic", 404, "NOT_FOUND", false],
    ["anthropic", 500, "UNAVAILABLE", true],
    ["anthropic", 529, "UNAVAILABLE", true],
  ];
  it.each(cases)(
    "%s %i → %s (retryable %s), keeping the provider's message",
    async (provider, status, code, retryable) => {
      const [engine, entry, fake] =
        provider === "openai" ? [openai, openAIEntry(), fakeOpenAI] : [anthropic, anthropicEntry(), fakeAnthropic];
      fake.setBehavior({ errorStatus: status, errorMessage: `provider says ${status}` });
      for (const stream of [true, false]) {
        const err = await failure(collect(engine, entry, chat("hi", { stream })));
        expect(err.code).toBe(code);
        expect(err.retryable).toBe(retryable);
        expect(err.origin).toBe("upstream");
        expect(err.upstreamStatus).toBe(status);
        expect(err.message).toContain(`provider says ${status}`);
      }
    },
  );

  it("maps 429 to RESOURCE_EXHAUSTED with retry-after in seconds", async () => {
    fakeAnthropic.setBehavior({ errorStatus: 429, retryAfter: "7" });
    const err = await failure(collect(anthropic, anthropicEntry(), chat("hi")));
    expect(err.code).toBe("RESOURCE_EXHAUSTED");
    expect(err.retryable).toBe(true);
    expect(err.retryAfterMs).toBe(7000);
  });

  it("prefers retry-after-ms", async () => {
    fakeOpenAI.setBehavior({ errorStatus: 429, retryAfter: "2", retryAfterMs: 1250 });
    const err = await failure(collect(openai, openAIEntry(), chat("hi", { stream: true })));
    expect(err.code).toBe("RESOURCE_EXHAUSTED");
    expect(err.retryAfterMs).toBe(1250);
    expect(err.upstreamStatus).toBe(429);
  });

  it("selects a behaviour per request by model directives", async () => {
    const err = await failure(collect(openai, openAIEntry({ upstream_model: "gpt+error-429+retry-3" }), chat("hi")));
    expect(err.retryAfterMs).toBe(3000);
    const ok = fold(await collect(openai, openAIEntry(), chat("still fine")));
    expect(ok.content).toBe("still fine");
  });

  it("refuses a model whose key env var is unset, naming the variable, without calling out", async () => {
    const err = await failure(collect(openai, openAIEntry({ api_key_env: "NOT_SET_ANYWHERE" }), chat("hi")));
    expect(err.code).toBe("FAILED_PRECONDITION");
    expect(err.retryable).toBe(false);
    expect(err.message).toContain("NOT_SET_ANYWHERE");
    expect(fakeOpenAI.requests).toHaveLength(0);
    expect(openai.status(openAIEntry({ api_key_env: "NOT_SET_ANYWHERE" })).ready).toBe(false);
    await expect(anthropic.load(anthropicEntry({ api_key_env: "NOT_SET_ANYWHERE" }))).rejects.toMatchObject({
      code: "FAILED_PRECONDITION",
    });
  });

  it("sends the key the getSecret function returns (a wrong one is refused by the provider)", async () => {
    const wrong = new OpenAIEngine({ getSecret: () => "sk-wrong", http });
    const err = await failure(collect(wrong, openAIEntry(), chat("hi")));
    expect(err.code).toBe("PERMISSION_DENIED");
    expect(err.message).toMatch(/refused the upstream API key/);
  });

  it("maps a refused connection to UNAVAILABLE", async () => {
    const err = await failure(collect(openai, openAIEntry({ base_url: "http://127.0.0.1:1/v1" }), chat("hi")));
    expect(err.code).toBe("UNAVAILABLE");
    expect(err.retryable).toBe(true);
    expect(err.origin).toBe("upstream");
  });

  it("maps the model's timeout to UNAVAILABLE", async () => {
    fakeAnthropic.setBehavior({ firstByteDelayMs: 2000 });
    const err = await failure(collect(anthropic, anthropicEntry({ timeout_ms: 150 }), chat("hi", { stream: true })));
    expect(err.code).toBe("UNAVAILABLE");
    expect(err.retryable).toBe(true);
    expect(err.reason).toBe("upstream_timeout");
  });
});

describe("in-stream errors and early exits", () => {
  it("maps an Anthropic in-stream overloaded error to UNAVAILABLE", async () => {
    fakeAnthropic.setBehavior({ streamErrorAfterChunks: 3 });
    const err = await failure(collect(anthropic, anthropicEntry(), chat("one two three", { stream: true })));
    expect(err.code).toBe("UNAVAILABLE");
    expect(err.upstreamStatus).toBe(529);
    expect(err.message).toContain("Overloaded");
  });

  it("maps an OpenAI in-stream error by its type", async () => {
    fakeOpenAI.setBehavior({ streamErrorAfterChunks: 2, errorStatus: 500 });
    const err = await failure(collect(openai, openAIEntry(), chat("one two three", { stream: true })));
    expect(err.code).toBe("UNAVAILABLE");
    expect(err.retryable).toBe(true);
  });

  it("closes the upstream request when the consumer stops reading", async () => {
    fakeOpenAI.setBehavior({ chunkDelayMs: 30 });
    for await (const _ of openai.generate({
      requestId: "r",
      model: openAIEntry(),
      request: chat("a b c d e f g h", { stream: true }),
      signal: new AbortController().signal,
    })) {
      break;
    }
    expect(await fakeOpenAI.requests[0]!.closed).toBe("aborted");
  });
});
