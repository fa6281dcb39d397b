import { randomBytes } from "node:crypto";
import Anthropic from "@anthropic-ai/sdk";
import { DeliverPolicy, jetstream } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { decodeEvent, UsageRecordedEvent } from "@tokenmesh/events";
import type { UsageRecorded } from "@tokenmesh/proto/events/v1/events";
import { waitFor } from "@tokenmesh/testing";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { createKey, type Mesh, startMesh } from "./mesh.js";

// The Anthropic Messages API at the gateway, driven by the official @anthropic-ai/sdk through the whole mesh: an
// OpenAI-compatible upstream (gpt-fake), an Anthropic upstream (claude-fake) and the local engine (local-tiny) all
// answer in Anthropic's format, with the same keys, limits and usage events as the OpenAI endpoint.

let mesh: Mesh;
let nc: NatsConnection;
let gateway: string;
let key: { id: string; key: string };
let client: Anthropic;
const usage = new Map<string, UsageRecorded>();

beforeAll(async () => {
  mesh = await startMesh({ natsUrl: inject("natsUrl"), redisUrl: inject("redisUrl") });
  gateway = mesh.gateways[0]!.http;
  nc = await connect({ servers: inject("natsUrl") });
  const consumer = await jetstream(nc).consumers.get("LLM_USAGE", { deliver_policy: DeliverPolicy.New });
  void (async () => {
    for await (const m of await consumer.consume()) {
      // The gateway's own event (the router's llm.usage.served.v2 shares the stream and the request id).
      if (m.subject !== UsageRecordedEvent.subject) continue;
      const e = decodeEvent(UsageRecordedEvent, m.data);
      usage.set(e.requestId, e);
    }
  })();
  // No user on the key, so the request's metadata.user_id is the event's user.
  key = await createKey(gateway, { name: "anthropic-e2e", team: "team-anthropic" });
  client = new Anthropic({ baseURL: gateway, apiKey: key.key, maxRetries: 0 });
});

afterAll(async () => {
  await nc?.close();
  await mesh?.stop();
});

afterEach(() => {
  mesh?.fakeOpenAI.setBehavior();
  mesh?.fakeAnthropic.setBehavior();
});

const usageOf = (requestId: string) =>
  waitFor(() => usage.get(requestId), { timeoutMs: 10_000, description: `usage event ${requestId}` });

const weatherTool: Anthropic.Tool = {
  name: "get_weather",
  description: "The weather in a city",
  input_schema: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
};

/** POSTs a raw body and returns the status, headers and the SSE events (name and parsed data) or JSON. */
async function post(path: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${gateway}${path}`, {
    method: "POST",
    headers: {
      "x-api-key": key.key,
      "anthropic-version": "2023-06-01",
      "content-type": "application/json",
      ...headers,
    },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  const events = text
    .split("\n\n")
    .filter((b) => b.startsWith("event: "))
    .map((b) => {
      const [eventLine, dataLine] = b.split("\n");
      return { event: eventLine!.slice("event: ".length), data: JSON.parse(dataLine!.slice("data: ".length)) };
    });
  return { res, text, events };
}

describe("POST /v1/messages through the official Anthropic client", () => {
  it("answers from an OpenAI-compatible model, and publishes usage for the messages endpoint", async () => {
    const { data, response, request_id } = await client.messages
      .create({
        model: "gpt-fake",
        max_tokens: 64,
        messages: [{ role: "user", content: "hello from anthropic sdk" }],
        metadata: { user_id: "bob" },
      })
      .withResponse();
    expect(data).toMatchObject({
      type: "message",
      role: "assistant",
      content: [{ type: "text", text: "hello from anthropic sdk" }],
      stop_reason: "end_turn",
      stop_sequence: null,
    });
    expect(data.id).toMatch(/^msg_/);
    expect(data.usage.input_tokens).toBeGreaterThan(0);
    expect(data.usage.output_tokens).toBe(4);
    expect(request_id).toMatch(/^req_/);
    expect(data.id).toBe(`msg_${request_id!.slice("req_".length)}`);
    // The SDK asks for its own (later) version; the gateway serves it and says so.
    expect(response.headers.get("anthropic-version")).toMatch(/^20\d\d-\d\d-\d\d$/);
    const e = await usageOf(request_id!);
    expect(e).toMatchObject({
      keyId: key.id,
      team: "team-anthropic",
      user: "bob",
      modelRequested: "gpt-fake",
      model: "gpt-fake",
      provider: "openai",
      endpoint: "messages",
      stream: false,
      status: "ok",
      inputTokens: data.usage.input_tokens,
      outputTokens: 4,
    });
  });

  it("streams with the messages.stream helper", async () => {
    const stream = client.messages.stream({
      model: "gpt-fake",
      max_tokens: 64,
      system: [{ type: "text", text: "Be brief." }],
      messages: [{ role: "user", content: "stream these five words" }],
    });
    let text = "";
    stream.on("text", (t) => {
      text += t;
    });
    const final = await stream.finalMessage();
    expect(text).toBe("stream these five words");
    expect(final.content).toEqual([{ type: "text", text: "stream these five words" }]);
    expect(final.stop_reason).toBe("end_turn");
    expect(final.usage.output_tokens).toBe(4);
    // Input tokens arrive with message_delta (the mesh knows them at the end of the stream).
    expect(final.usage.input_tokens).toBeGreaterThan(0);
    const requestId = (await stream.withResponse()).response.headers.get("request-id")!;
    expect(await usageOf(requestId)).toMatchObject({
      endpoint: "messages",
      stream: true,
      status: "ok",
      outputTokens: 4,
    });
  });

  it("streams raw events in Anthropic's order with stream: true", async () => {
    const stream = await client.messages.create({
      model: "gpt",
      max_tokens: 64,
      messages: [{ role: "user", content: "one two three" }],
      stream: true,
    });
    const types: string[] = [];
    let text = "";
    for await (const ev of stream) {
      types.push(ev.type);
      if (ev.type === "content_block_delta" && ev.delta.type === "text_delta") text += ev.delta.text;
      if (ev.type === "message_delta") expect(ev.delta.stop_reason).toBe("end_turn");
    }
    expect(text).toBe("one two three");
    expect(types[0]).toBe("message_start");
    expect(types.slice(1).filter((t) => t !== "content_block_delta")).toEqual([
      "content_block_start",
      "content_block_stop",
      "message_delta",
      "message_stop",
    ]);
    // The SDK skips pings; on the wire there is one right after message_start.
    const raw = await post("/v1/messages", {
      model: "gpt",
      max_tokens: 64,
      messages: [{ role: "user", content: "hi" }],
      stream: true,
    });
    expect(raw.res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    // Why the router chose the model, as on /v1/chat/completions (streamed and whole).
    expect(raw.res.headers.get("x-tokenmesh-route-reason")).toBe("alias:gpt");
    const whole = await post("/v1/messages", {
      model: "gpt",
      max_tokens: 8,
      messages: [{ role: "user", content: "hi" }],
    });
    expect(whole.res.status).toBe(200);
    expect(whole.res.headers.get("x-tokenmesh-route-reason")).toBe("alias:gpt");
    expect(raw.events.map((e) => e.event).slice(0, 3)).toEqual(["message_start", "ping", "content_block_start"]);
    for (const e of raw.events) expect(e.data.type).toBe(e.event);
  });

  it("returns tool_use from an OpenAI-compatible model and takes the tool_result back, whole and streamed", async () => {
    const first = await client.messages.create({
      model: "gpt-fake",
      max_tokens: 128,
      tools: [weatherTool],
      messages: [{ role: "user", content: "call the get_weather tool" }],
    });
    expect(first.stop_reason).toBe("tool_use");
    const use = first.content.find((b): b is Anthropic.ToolUseBlock => b.type === "tool_use")!;
    expect(use).toMatchObject({ name: "get_weather", input: { city: "test" } });
    expect(use.id).toBeTruthy();

    const second = await client.messages.create({
      model: "gpt-fake",
      max_tokens: 128,
      tools: [weatherTool],
      messages: [
        { role: "user", content: "call the get_weather tool" },
        { role: "assistant", content: first.content },
        { role: "user", content: [{ type: "tool_result", tool_use_id: use.id, content: "18C and sunny" }] },
      ],
    });
    expect(second.stop_reason).toBe("end_turn");
    expect(second.content).toEqual([{ type: "text", text: "Tool result: 18C and sunny" }]);
    // The upstream got the conversation as OpenAI's wire: the call, then a tool message answering it.
    const sent = mesh.fakeOpenAI.requests.at(-1)!.body as { messages: { role: string; tool_call_id?: string }[] };
    expect(sent.messages.map((m) => m.role)).toEqual(["user", "assistant", "tool"]);
    expect(sent.messages[2]!.tool_call_id).toBe(use.id);

    const stream = client.messages.stream({
      model: "gpt-fake",
      max_tokens: 128,
      tools: [weatherTool],
      tool_choice: { type: "tool", name: "get_weather" },
      messages: [{ role: "user", content: "what is the weather?" }],
    });
    const pieces: string[] = [];
    stream.on("inputJson", (partial) => {
      pieces.push(partial);
    });
    const final = await stream.finalMessage();
    expect(final.stop_reason).toBe("tool_use");
    expect(final.content).toMatchObject([{ type: "tool_use", name: "get_weather", input: { city: "test" } }]);
    // Arguments arrive as input_json_delta pieces; the guard's output redactor filters them like text, so a short
    // argument string may be held back and released as one piece.
    expect(pieces.length).toBeGreaterThanOrEqual(1);
    expect(pieces.join("")).toBe('{"city":"test"}');
  });

  it("passes an Anthropic upstream the system blocks, top_k, stop sequences, user and tool results with is_error", async () => {
    mesh.fakeAnthropic.reset();
    const msg = await client.messages.create({
      model: "claude-fake",
      max_tokens: 50,
      system: [
        { type: "text", text: "You are terse.", cache_control: { type: "ephemeral" } },
        { type: "text", text: "Answer in English." },
      ],
      // Sampling options are no longer in the SDK's types for the newest models; the API (and the mesh) take them.
      ...({ temperature: 0.5, top_p: 0.9, top_k: 7 } as Record<string, number>),
      stop_sequences: ["STOP"],
      metadata: { user_id: "carol" },
      tools: [weatherTool],
      tool_choice: { type: "auto", disable_parallel_tool_use: true },
      messages: [
        { role: "user", content: "weather?" },
        {
          role: "assistant",
          content: [{ type: "tool_use", id: "toolu_1", name: "get_weather", input: { city: "Oslo" } }],
        },
        {
          role: "user",
          content: [{ type: "tool_result", tool_use_id: "toolu_1", content: "lookup failed", is_error: true }],
        },
      ],
    });
    expect(msg.content).toEqual([{ type: "text", text: "Tool result: lookup failed" }]);
    expect(msg.stop_reason).toBe("end_turn");
    const sent = mesh.fakeAnthropic.requests.at(-1)!;
    expect(sent.path).toBe("/v1/messages");
    expect(sent.body).toMatchObject({
      model: "claude-3-5-haiku-latest",
      max_tokens: 50,
      system: "You are terse.\n\nAnswer in English.",
      // Sampling options are no longer in the SDK's types for the newest models; the API (and the mesh) take them.
      ...({ temperature: 0.5, top_p: 0.9, top_k: 7 } as Record<string, number>),
      stop_sequences: ["STOP"],
      metadata: { user_id: "carol" },
      tools: [{ name: "get_weather", description: "The weather in a city", input_schema: weatherTool.input_schema }],
      tool_choice: { type: "auto", disable_parallel_tool_use: true },
      messages: [
        { role: "user", content: "weather?" },
        {
          role: "assistant",
          content: [{ type: "tool_use", id: "toolu_1", name: "get_weather", input: { city: "Oslo" } }],
        },
        {
          role: "user",
          content: [{ type: "tool_result", tool_use_id: "toolu_1", content: "lookup failed", is_error: true }],
        },
      ],
    });
  });

  it("streams from an Anthropic upstream, base64 images reaching it as base64 sources", async () => {
    mesh.fakeAnthropic.reset();
    const png = randomBytes(24).toString("base64");
    const stream = client.messages.stream({
      model: "claude-fake",
      max_tokens: 50,
      messages: [
        {
          role: "user",
          content: [
            { type: "image", source: { type: "base64", media_type: "image/png", data: png } },
            { type: "image", source: { type: "url", url: "https://example.com/cat.jpg" } },
            { type: "text", text: "describe both pictures" },
          ],
        },
      ],
    });
    const final = await stream.finalMessage();
    expect(final.content).toMatchObject([{ type: "text", text: "describe both pictures" }]);
    expect(final.stop_reason).toBe("end_turn");
    expect(final.usage.output_tokens).toBe(3);
    const sent = mesh.fakeAnthropic.requests.at(-1)!.body as { stream: boolean; messages: unknown[] };
    expect(sent.stream).toBe(true);
    expect(sent.messages).toEqual([
      {
        role: "user",
        content: [
          { type: "image", source: { type: "base64", media_type: "image/png", data: png } },
          { type: "image", source: { type: "url", url: "https://example.com/cat.jpg" } },
          { type: "text", text: "describe both pictures" },
        ],
      },
    ]);
  });

  it("answers from the local engine, whole and streamed, stopping at max_tokens", async () => {
    const whole = await client.messages.create({
      model: "local-tiny",
      max_tokens: 6,
      messages: [{ role: "user", content: "hello local" }],
    });
    expect(whole.stop_reason).toBe("max_tokens");
    expect(whole.usage.output_tokens).toBe(6);
    expect((whole.content[0] as Anthropic.TextBlock).text.length).toBeGreaterThan(0);

    const stream = client.messages.stream({
      model: "tiny",
      max_tokens: 5,
      messages: [{ role: "user", content: "stream local" }],
    });
    const final = await stream.finalMessage();
    expect(final.stop_reason).toBe("max_tokens");
    expect(final.usage.output_tokens).toBe(5);
    expect(final.usage.input_tokens).toBeGreaterThan(0);
    const requestId = (await stream.withResponse()).response.headers.get("request-id")!;
    expect(await usageOf(requestId)).toMatchObject({ provider: "local", endpoint: "messages", outputTokens: 5 });
  });

  it("serves a request without anthropic-version as 2023-06-01 (curl users forget it)", async () => {
    const res = await fetch(`${gateway}/v1/messages`, {
      method: "POST",
      headers: { "x-api-key": key.key, "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-fake", max_tokens: 8, messages: [{ role: "user", content: "no version" }] }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("anthropic-version")).toBe("2023-06-01");
    expect(await res.json()).toMatchObject({ type: "message", content: [{ type: "text", text: "no version" }] });
  });

  it("accepts Authorization: Bearer as well as x-api-key", async () => {
    const bearer = new Anthropic({ baseURL: gateway, apiKey: null, authToken: key.key, maxRetries: 0 });
    const msg = await bearer.messages.create({
      model: "gpt-fake",
      max_tokens: 16,
      messages: [{ role: "user", content: "bearer works" }],
    });
    expect(msg.content).toEqual([{ type: "text", text: "bearer works" }]);
  });
});

describe("one trace", () => {
  it("joins the client's trace: gateway and router spans, the model span and the usage event share it", async () => {
    const traceId = randomBytes(16).toString("hex");
    const { res } = await post(
      "/v1/messages",
      { model: "claude-fake", max_tokens: 8, messages: [{ role: "user", content: "trace me" }] },
      { traceparent: `00-${traceId}-${randomBytes(8).toString("hex")}-01` },
    );
    expect(res.status).toBe(200);
    await waitFor(
      () => {
        const services = new Set(mesh.otlp.spans.filter((s) => s.traceId === traceId).map((s) => s.service));
        return services.has("tokenmesh-gateway") && services.has("tokenmesh-router");
      },
      { timeoutMs: 15_000, description: "gateway and router spans" },
    );
    const modelSpan = await waitFor(
      () => mesh.otlp.spans.find((s) => s.traceId === traceId && s.name === "chat claude-fake"),
      { timeoutMs: 15_000, description: "the model span" },
    );
    expect(modelSpan.attributes).toMatchObject({
      "gen_ai.operation.name": "chat",
      "gen_ai.provider.name": "anthropic",
      "gen_ai.request.model": "claude-fake",
    });
    expect((await usageOf(res.headers.get("request-id")!)).traceId).toBe(traceId);
  });
});

describe("errors in Anthropic's format, as the SDK's typed errors", () => {
  const ask = (c: Anthropic, params: Record<string, unknown> = {}) =>
    c.messages
      .create({
        model: "gpt-fake",
        max_tokens: 16,
        messages: [{ role: "user", content: "x" }],
        ...(params as Partial<Anthropic.MessageCreateParamsNonStreaming>),
      })
      .then(
        () => {
          throw new Error("expected an error");
        },
        (e: unknown) => e as InstanceType<typeof Anthropic.APIError>,
      );

  it("401 for a wrong or missing key", async () => {
    const wrong = await ask(new Anthropic({ baseURL: gateway, apiKey: "tm-wrong", maxRetries: 0 }));
    expect(wrong).toBeInstanceOf(Anthropic.AuthenticationError);
    expect(wrong.status).toBe(401);
    expect(wrong.error).toMatchObject({ type: "error", error: { type: "authentication_error" } });
    expect(wrong.requestID).toMatch(/^req_/);
    const none = await post("/v1/messages", { model: "gpt-fake", max_tokens: 5, messages: [] }, { "x-api-key": "" });
    expect(none.res.status).toBe(400);
    const unauth = await fetch(`${gateway}/v1/messages`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-fake", max_tokens: 5, messages: [{ role: "user", content: "x" }] }),
    });
    expect(unauth.status).toBe(401);
    expect(await unauth.json()).toMatchObject({ type: "error", error: { type: "authentication_error" } });
  });

  it("404 for an unknown model, 403 for a model the key may not use", async () => {
    const missing = await ask(client, { model: "no-such-model" });
    expect(missing).toBeInstanceOf(Anthropic.NotFoundError);
    expect(missing.error).toMatchObject({ error: { type: "not_found_error" } });
    const narrow = await createKey(gateway, { name: "only-local", models: ["local-tiny"] });
    const denied = await ask(new Anthropic({ baseURL: gateway, apiKey: narrow.key, maxRetries: 0 }));
    expect(denied).toBeInstanceOf(Anthropic.PermissionDeniedError);
    expect(denied.error).toMatchObject({ error: { type: "permission_error" } });
  });

  it("400 for invalid fields, naming the field, and for an unsupported anthropic-version", async () => {
    const hot = await ask(client, { temperature: 1.5 });
    expect(hot).toBeInstanceOf(Anthropic.BadRequestError);
    expect(hot.error).toMatchObject({ type: "error", error: { type: "invalid_request_error" } });
    expect(hot.message).toContain("temperature");
    const noMax = await post("/v1/messages", { model: "gpt-fake", messages: [{ role: "user", content: "x" }] });
    expect(noMax.res.status).toBe(400);
    expect(JSON.parse(noMax.text)).toEqual({
      type: "error",
      error: { type: "invalid_request_error", message: "max_tokens: Field required" },
      request_id: noMax.res.headers.get("request-id"),
    });
    const badJson = await fetch(`${gateway}/v1/messages`, {
      method: "POST",
      headers: { "x-api-key": key.key, "content-type": "application/json" },
      body: "{not json",
    });
    expect(badJson.status).toBe(400);
    expect(await badJson.json()).toMatchObject({ type: "error", error: { type: "invalid_request_error" } });
    const malformed = await post(
      "/v1/messages",
      { model: "gpt-fake", max_tokens: 5, messages: [{ role: "user", content: "x" }] },
      { "anthropic-version": "latest" },
    );
    expect(malformed.res.status).toBe(400);
    const oldVersion = await post(
      "/v1/messages",
      { model: "gpt-fake", max_tokens: 5, messages: [{ role: "user", content: "x" }] },
      { "anthropic-version": "2023-01-01" },
    );
    expect(oldVersion.res.status).toBe(400);
    expect(oldVersion.text).toContain("anthropic-version");
  });

  it("429 with retry-after when the key's rate limit is reached", async () => {
    const limited = await createKey(gateway, { name: "anthropic-rpm-1", rpm: 1 });
    const c = new Anthropic({ baseURL: gateway, apiKey: limited.key, maxRetries: 0 });
    const ok = await c.messages
      .create({ model: "gpt-fake", max_tokens: 8, messages: [{ role: "user", content: "first" }] })
      .withResponse();
    expect(ok.response.headers.get("anthropic-ratelimit-requests-limit")).toBe("1");
    expect(ok.response.headers.get("anthropic-ratelimit-requests-remaining")).toBe("0");
    const err = await ask(c);
    expect(err).toBeInstanceOf(Anthropic.RateLimitError);
    expect(err.error).toMatchObject({ error: { type: "rate_limit_error" } });
    expect(Number(err.headers?.get("retry-after"))).toBeGreaterThan(0);
  });

  it("ends a stream that breaks after its first byte with an error event, never message_stop", async () => {
    // Long enough that text gets past the guard's holdback window before the upstream breaks.
    const prompt = Array.from({ length: 60 }, (_, i) => (i % 2 === 0 ? "lorem" : "ipsum")).join(" ");
    mesh.fakeOpenAI.setBehavior({ streamErrorAfterChunks: 50 });
    const body: Anthropic.MessageCreateParamsStreaming = {
      model: "gpt-fake",
      max_tokens: 100,
      messages: [{ role: "user", content: prompt }],
      stream: true,
    };
    const raw = await post("/v1/messages", body);
    expect(raw.res.status).toBe(200);
    const names = raw.events.map((e) => e.event);
    expect(names[0]).toBe("message_start");
    expect(names).toContain("content_block_delta");
    expect(names.at(-1)).toBe("error");
    expect(names).not.toContain("message_stop");
    expect(raw.events.at(-1)!.data).toMatchObject({ type: "error", error: { type: expect.any(String) } });
    const requestId = raw.res.headers.get("request-id")!;
    expect(await usageOf(requestId)).toMatchObject({ endpoint: "messages", stream: true, status: "error" });

    const sdkStream = client.messages.stream(body);
    const err = await sdkStream.finalMessage().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(Anthropic.APIError);
  });
});

describe("POST /v1/messages/count_tokens", () => {
  it("estimates input tokens, more for a longer prompt and for tools", async () => {
    const { data, response } = await client.messages
      .countTokens({ model: "claude-fake", messages: [{ role: "user", content: "hello" }] })
      .withResponse();
    expect(data.input_tokens).toBeGreaterThan(0);
    expect(response.headers.get("x-tokenmesh-token-count")).toBe("estimate");
    const longer = await client.messages.countTokens({
      model: "gpt-fake",
      system: "You are a helpful assistant who answers questions about the weather.",
      messages: [{ role: "user", content: "hello, what will the weather be like in Paris tomorrow afternoon?" }],
      tools: [weatherTool],
    });
    expect(longer.input_tokens).toBeGreaterThan(data.input_tokens);
  });

  it("checks the key and the model like a request does", async () => {
    const missing = await client.messages
      .countTokens({ model: "no-such-model", messages: [{ role: "user", content: "x" }] })
      .catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(Anthropic.NotFoundError);
    const wrong = await new Anthropic({ baseURL: gateway, apiKey: "tm-wrong", maxRetries: 0 }).messages
      .countTokens({ model: "gpt-fake", messages: [{ role: "user", content: "x" }] })
      .catch((e: unknown) => e);
    expect(wrong).toBeInstanceOf(Anthropic.AuthenticationError);
  });
});
