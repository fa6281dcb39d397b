import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DeliverPolicy, jetstream } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { context, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { decodeEvent, UsageServedBatchEvent } from "@tokenmesh/events";
import { type ChatChunk, ChatRequest } from "@tokenmesh/proto/common/v1/chat";
import { type RouteResponse, RouterServiceClient } from "@tokenmesh/proto/router/v1/router";
import { callStream, callUnary, createGrpcClient, Lifecycle } from "@tokenmesh/runtime";
import { createLogger, SpanKind } from "@tokenmesh/telemetry";
import { type FakeUpstream, startFakeAnthropic, startFakeOpenAI, uniqueName, waitFor } from "@tokenmesh/testing";
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from "vitest";
import { createApp, type RouterApp } from "../src/app.js";
import { testRouterConfig } from "./router-config.js";

// Remote models are called by the router in-process (no inference hop): here no inference runs at all.

const logger = createLogger({ service: "router-remote-test", level: "silent" });
const spans = new InMemorySpanExporter();
const OPENAI_KEY = "sk-router-openai";
const ANTHROPIC_KEY = "sk-router-anthropic";

function catalogYaml(openai: string, anthropic: string): string {
  const gpt = (id: string, model: string, extra = "") =>
    `  - { id: ${id}, engine: openai, base_url: "${openai}", api_key_env: ROUTER_TEST_OPENAI_KEY, upstream_model: "${model}"${extra} }`;
  return [
    "models:",
    gpt("gpt", "gpt-up", ", tier: small"),
    gpt("gpt-down", "gpt-up+error-503", ", fallbacks: [claude]"),
    gpt("gpt-limited", "gpt-up+error-429+retry-30", ", fallbacks: [gpt]"),
    gpt("gpt-nokey", "gpt-up", ", tier: small").replace("ROUTER_TEST_OPENAI_KEY", "ROUTER_TEST_UNSET_KEY"),
    gpt("gpt-embed", "embed-up", ", kind: embedding"),
    `  - { id: claude, engine: anthropic, base_url: "${anthropic}", api_key_env: ROUTER_TEST_ANTHROPIC_KEY, upstream_model: claude-up }`,
    "  - { id: local-only, engine: local, source: ./missing.gguf }",
    "routes:",
    "  auto: { default_tier: small, tiers: { small: [gpt-nokey, gpt] } }",
    "  retry: { max_attempts: 2, base_delay_ms: 5, max_delay_ms: 20 }",
    "",
  ].join("\n");
}

/** The router's served-usage report of `requestId` as stored in JetStream, with its batch and message id, if any. */
async function servedReport(nc: NatsConnection, requestId: string) {
  const consumer = await jetstream(nc).consumers.get("LLM_USAGE", {
    filter_subjects: UsageServedBatchEvent.subject,
    deliver_policy: DeliverPolicy.All,
  });
  const messages = await consumer.fetch({ max_messages: 10_000, expires: 1_000 });
  for await (const m of messages) {
    const batch = decodeEvent(UsageServedBatchEvent, m.data);
    const e = batch.reports.find((r) => r.requestId === requestId);
    if (e !== undefined) return { e, batch, msgId: m.headers?.get("Nats-Msg-Id") };
  }
  return undefined;
}

/** A router on free ports with the test's catalog; `env` adds or overrides its configuration. */
async function startRouter(catalogPath: string, env: Record<string, string> = {}): Promise<RouterApp> {
  // No inference address given: nothing listens where the router would call it (remote models must not need it).
  const config = await testRouterConfig({ catalogPath, redisPrefix: `${uniqueName("router-remote")}:`, env });
  const app = createApp(config, { logger, lifecycle: new Lifecycle({ logger, deadlineMs: 3_000 }) });
  await app.start();
  return app;
}

describe("router calling remote providers in-process", () => {
  let dir: string;
  let openai: FakeUpstream;
  let anthropic: FakeUpstream;
  let app: RouterApp;
  let client: RouterServiceClient;

  beforeAll(async () => {
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }));
    process.env.ROUTER_TEST_OPENAI_KEY = OPENAI_KEY;
    process.env.ROUTER_TEST_ANTHROPIC_KEY = ANTHROPIC_KEY;
    openai = await startFakeOpenAI({ apiKey: OPENAI_KEY });
    anthropic = await startFakeAnthropic({ apiKey: ANTHROPIC_KEY });
    dir = await mkdtemp(join(tmpdir(), "router-remote-"));
    const catalogPath = join(dir, "mesh.yaml");
    await writeFile(catalogPath, catalogYaml(openai.url, anthropic.url));
    app = await startRouter(catalogPath);
    client = createGrpcClient(RouterServiceClient, `127.0.0.1:${app.host.grpcPort}`);
  });

  afterAll(async () => {
    client?.close();
    await app?.stop();
    await openai?.close();
    await anthropic?.close();
    await rm(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    openai.reset();
    anthropic.reset();
    spans.reset();
  });

  const ctx = () => ({ requestId: uniqueName("req"), keyId: "k", team: "", user: "", priority: 0 });

  async function route(model: string, content = "hello remote world", stream = true): Promise<RouteResponse[]> {
    const out: RouteResponse[] = [];
    for await (const msg of callStream(client.route.bind(client), {
      routeWithFirstChunk: false,
      batchChunks: false,
      context: ctx(),
      request: ChatRequest.fromPartial({ model, stream, messages: [{ role: 2, content }], maxTokens: 32 }),
    }))
      out.push(msg);
    return out;
  }
  const text = (msgs: RouteResponse[]) => msgs.flatMap((m) => m.chunk?.choices.map((c) => c.content) ?? []).join("");

  it("streams a remote model's answer with one CLIENT span per attempt and no call to inference", async () => {
    const msgs = await route("gpt");
    expect(msgs[0]?.route).toMatchObject({
      model: "gpt",
      provider: "openai",
      cacheHit: false,
      attempts: 1,
      reason: "model:gpt",
    });
    expect(text(msgs)).toBe("hello remote world");
    expect(msgs.at(-1)?.chunk?.usage).toEqual({ inputTokens: 3, outputTokens: 3, cachedTokens: 0 });
    expect(openai.requests).toHaveLength(1);
    expect(openai.requests[0]!.headers.authorization).toBe(`Bearer ${OPENAI_KEY}`);

    const finished = spans.getFinishedSpans();
    const chat = finished.filter((s) => s.name === "chat gpt");
    expect(chat).toHaveLength(1);
    expect(chat[0]!.kind).toBe(SpanKind.CLIENT);
    expect(chat[0]!.attributes).toMatchObject({
      "gen_ai.operation.name": "chat",
      "gen_ai.provider.name": "openai",
      "gen_ai.request.model": "gpt",
      "gen_ai.response.model": "gpt-up",
      "gen_ai.usage.input_tokens": 3,
      "gen_ai.usage.output_tokens": 3,
    });
    expect(finished.some((s) => s.name.includes("InferenceService"))).toBe(false);
  });

  it("answers a non-streamed request from Anthropic as one chunk carrying usage", async () => {
    const msgs = await route("claude", "one two", false);
    expect(msgs[0]?.route).toMatchObject({ model: "claude", provider: "anthropic" });
    const chunks = msgs.flatMap((m) => (m.chunk ? [m.chunk] : [])) as ChatChunk[];
    expect(chunks).toHaveLength(1);
    expect(text(msgs)).toBe("one two");
    expect(chunks[0]!.usage?.outputTokens).toBe(2);
    expect(anthropic.requests[0]!.headers["x-api-key"]).toBe(ANTHROPIC_KEY);
  });

  it("moves from a remote model that answers 503 straight to its fallback", async () => {
    const msgs = await route("gpt-down");
    expect(msgs[0]?.route).toMatchObject({ model: "claude", provider: "anthropic", attempts: 2 });
    expect(text(msgs)).toBe("hello remote world");
    // The last candidate is retried in place; a model with a fallback moves on at once on UNAVAILABLE.
    expect(openai.requests).toHaveLength(1);
    expect(anthropic.requests).toHaveLength(1);
    const failed = spans.getFinishedSpans().find((s) => s.name === "chat gpt-down");
    expect(failed?.attributes["error.type"]).toBe("UNAVAILABLE");
  });

  it("moves past a rate-limited model whose Retry-After is longer than the retry budget", async () => {
    const msgs = await route("gpt-limited");
    expect(msgs[0]?.route).toMatchObject({ model: "gpt", attempts: 2 });
    expect(openai.requests.map((r) => (r.body as { model: string }).model)).toEqual([
      "gpt-up+error-429+retry-30",
      "gpt-up",
    ]);
  });

  it("reports remote readiness from the key env var in-process, while inference is unreachable", async () => {
    const { models } = await callUnary(client.listModels.bind(client), {});
    const byId = new Map(models.map((m) => [m.id, m]));
    expect(byId.get("gpt")).toMatchObject({ engine: "openai", device: "remote", ready: true });
    expect(byId.get("claude")).toMatchObject({ engine: "anthropic", device: "remote", ready: true });
    expect(byId.get("gpt-nokey")).toMatchObject({ device: "remote", ready: false });
    expect(byId.get("local-only")).toMatchObject({ engine: "local", ready: false });
    // auto skips the tier's first member, whose key is missing.
    const msgs = await route("auto");
    expect(msgs[0]?.route?.model).toBe("gpt");
  });

  it("refuses a remote model without its key as FAILED_PRECONDITION, naming the variable, without calling out", async () => {
    await expect(route("gpt-nokey")).rejects.toMatchObject({
      code: "FAILED_PRECONDITION",
      message: expect.stringContaining("ROUTER_TEST_UNSET_KEY"),
    });
    expect(openai.requests).toHaveLength(0);
  });

  it("aborts the upstream request when the client cancels the stream", async () => {
    openai.setBehavior({ chunkDelayMs: 50 });
    const ac = new AbortController();
    const seen: RouteResponse[] = [];
    const err = await (async () => {
      for await (const msg of callStream(
        client.route.bind(client),
        {
          routeWithFirstChunk: false,
          batchChunks: false,
          context: ctx(),
          request: ChatRequest.fromPartial({
            model: "gpt",
            stream: true,
            messages: [{ role: 2, content: "a b c d e f g h i j k l m n o p" }],
          }),
        },
        { signal: ac.signal },
      )) {
        seen.push(msg);
        if (msg.chunk !== undefined) ac.abort();
      }
    })().catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "CANCELLED" });
    expect(await openai.requests[0]!.closed).toBe("aborted");
  });

  it("reports what the provider served on llm.usage.served.v2: exact when complete, estimated when cancelled", async () => {
    const nc = await connect({ servers: inject("natsUrl") });
    try {
      const servedFor = (requestId: string) =>
        waitFor(() => servedReport(nc, requestId), {
          timeoutMs: 10_000,
          description: `served usage of ${requestId}`,
        });
      const complete = ctx();
      const out: RouteResponse[] = [];
      for await (const msg of callStream(client.route.bind(client), {
        routeWithFirstChunk: false,
        batchChunks: false,
        context: complete,
        request: ChatRequest.fromPartial({
          model: "gpt",
          stream: true,
          messages: [{ role: 2, content: "one two three" }],
        }),
      }))
        out.push(msg);
      const usage = out.find((m) => m.chunk?.usage)?.chunk?.usage;
      const exact = await servedFor(complete.requestId);
      // One message per batch, named by the router that sent it and the batch's sequence.
      expect(exact.batch.source).toMatch(/^router-[0-9a-f]{12}$/);
      expect(exact.msgId).toMatch(new RegExp(`^${exact.batch.source}:[1-9][0-9]*$`));
      expect(exact.e).toMatchObject({
        keyId: "k",
        model: "gpt",
        provider: "openai",
        status: "ok",
        estimated: false,
        inputTokens: usage?.inputTokens,
        outputTokens: usage?.outputTokens,
      });

      openai.setBehavior({ chunkDelayMs: 50 });
      const cancelled = ctx();
      const ac = new AbortController();
      let chunks = 0;
      await (async () => {
        for await (const msg of callStream(
          client.route.bind(client),
          {
            routeWithFirstChunk: false,
            batchChunks: false,
            context: cancelled,
            request: ChatRequest.fromPartial({
              model: "gpt",
              stream: true,
              messages: [{ role: 2, content: "a b c d e f g h i j k l m n o p" }],
            }),
          },
          { signal: ac.signal },
        )) {
          if (msg.chunk?.choices.some((c) => c.content)) chunks++;
          if (chunks === 3) ac.abort();
        }
      })().catch(() => undefined);
      const partial = await servedFor(cancelled.requestId);
      expect(partial.e).toMatchObject({ status: "cancelled", estimated: true });
      expect(partial.e.outputTokens).toBeGreaterThanOrEqual(3);
      expect(partial.e.inputTokens).toBeGreaterThan(0);
    } finally {
      await nc.close();
    }
  });

  it("embeds through a remote provider", async () => {
    const res = await callUnary(client.embed.bind(client), {
      context: ctx(),
      request: { model: "gpt-embed", input: ["alpha", "beta"], user: "" },
    });
    expect(res.route).toMatchObject({ model: "gpt-embed", provider: "openai", attempts: 1 });
    expect(res.response?.data).toHaveLength(2);
    expect(openai.requests[0]!.path).toBe("/v1/embeddings");
    const span = spans.getFinishedSpans().find((s) => s.name === "embeddings gpt-embed");
    expect(span?.attributes["gen_ai.usage.input_tokens"]).toBe(2);
  });

  it("exports the per-call metrics of remote calls", async () => {
    await route("gpt");
    const body = await (await fetch(`http://127.0.0.1:${app.host.opsPort}/metrics`)).text();
    expect(body).toMatch(/tokenmesh_router_upstream_duration_seconds_count\{provider="openai",status="200"\} [1-9]/);
    expect(body).toMatch(/tokenmesh_router_upstream_duration_seconds_count\{provider="openai",status="503"\} [1-9]/);
    expect(body).toMatch(/tokenmesh_router_input_tokens_total\{model="gpt",provider="openai"\} [1-9]/);
    expect(body).toMatch(/tokenmesh_router_output_tokens_total\{model="gpt",provider="openai"\} [1-9]/);
    expect(body).toMatch(
      /gen_ai_server_time_to_first_token_seconds_count\{gen_ai_operation_name="chat",gen_ai_provider_name="openai",gen_ai_request_model="gpt"\} [1-9]/,
    );
    expect(body).toMatch(
      /gen_ai_client_operation_duration_seconds_count\{gen_ai_operation_name="chat",gen_ai_provider_name="openai",gen_ai_request_model="gpt-down",error_type="UNAVAILABLE"\} [1-9]/,
    );
  });
});

describe("a router stopped gracefully", () => {
  it("publishes the served-usage reports still waiting for their batch before it exits", async () => {
    const openai = await startFakeOpenAI({ apiKey: OPENAI_KEY });
    const dir = await mkdtemp(join(tmpdir(), "router-stop-"));
    const nc = await connect({ servers: inject("natsUrl") });
    try {
      const catalogPath = join(dir, "mesh.yaml");
      await writeFile(catalogPath, catalogYaml(openai.url, openai.url));
      // A batch waits up to 1 s: the stop below comes well within it, so only the stop can have sent the report.
      const app = await startRouter(catalogPath, { ROUTER_USAGE_FLUSH_MS: "1000" });
      const client = createGrpcClient(RouterServiceClient, `127.0.0.1:${app.host.grpcPort}`);
      const context = { requestId: uniqueName("req"), keyId: "k", team: "", user: "", priority: 0 };
      for await (const _ of callStream(client.route.bind(client), {
        routeWithFirstChunk: false,
        batchChunks: false,
        context,
        request: ChatRequest.fromPartial({ model: "gpt", stream: true, messages: [{ role: 2, content: "bye" }] }),
      })) {
        // drained
      }
      client.close();
      await app.stop();
      const stored = await servedReport(nc, context.requestId);
      expect(stored?.e).toMatchObject({ model: "gpt", status: "ok", estimated: false });
    } finally {
      await nc.close();
      await openai.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
