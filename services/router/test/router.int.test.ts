import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { context, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { type ChatChunk, ChatRequest, ModelInfo } from "@tokenmesh/proto/common/v1/chat";
import { type GenerateResponse, InferenceServiceService } from "@tokenmesh/proto/inference/v1/inference";
import { type RouteResponse, RouterServiceClient } from "@tokenmesh/proto/router/v1/router";
import {
  AppError,
  callStream,
  callUnary,
  createGrpcClient,
  GrpcServer,
  Lifecycle,
  UpstreamUnavailableError,
} from "@tokenmesh/runtime";
import { createLogger, SpanKind } from "@tokenmesh/telemetry";
import { uniqueName, waitFor } from "@tokenmesh/testing";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { RedisCircuitBreaker } from "../src/adapters/redis-breaker.js";
import { createApp, type RouterApp } from "../src/app.js";
import { testRouterConfig } from "./router-config.js";
import { inferenceServing } from "./scripted-inference.js";

const logger = createLogger({ service: "router-test", level: "silent" });
const spans = new InMemorySpanExporter();

beforeAll(() => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }));
});

// Local models: the router calls them through the scripted inference below (remote.int.test.ts covers providers).
const upstream = (id: string, extra = "") => `  - { id: ${id}, engine: local, source: ./${id}.gguf${extra} }`;

function catalogYaml(models: string[]): string {
  return [
    "models:",
    ...models,
    "routes:",
    "  auto: { default_tier: small, tiers: { small: [flaky, backup] } }",
    "  retry: { max_attempts: 3, base_delay_ms: 5, max_delay_ms: 20 }",
    "  breaker: { failure_threshold: 3, cooldown_ms: 60000 }",
    "",
  ].join("\n");
}

const baseModels = [
  upstream("flaky", ", aliases: [flaky-alias], tier: small"),
  upstream("down", ", fallbacks: [backup]"),
  upstream("broken", ", fallbacks: [backup]"),
  upstream("backup"),
  upstream("breaks-mid", ", fallbacks: [backup]"),
  upstream("rejects", ", fallbacks: [backup]"),
  upstream("slow"),
  upstream("embedder", ", kind: embedding"),
];

/** A scripted InferenceService: behaviour by model id, every call recorded as `<request id>:<model>`. */
function scriptedInference() {
  const calls: string[] = [];
  const failuresLeft = new Map<string, number>();
  let release: (() => void) | undefined;
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  const chunk = (model: string, content: string, usage = false): GenerateResponse => ({
    chunk: {
      id: "chatcmpl-1",
      created: 1,
      model,
      choices: usage ? [] : [{ index: 0, role: 3, content, toolCalls: [], finishReason: 0, refusal: "" }],
      usage: usage ? { inputTokens: 3, outputTokens: 2, cachedTokens: 0 } : undefined,
    },
  });
  const server = new GrpcServer({ logger });
  server.add(
    InferenceServiceService,
    inferenceServing({
      async *generate(req) {
        const rid = req.context?.requestId ?? "";
        calls.push(`${rid}:${req.model}`);
        switch (req.model) {
          case "flaky": {
            // Fails the first two tries of each request, then answers.
            const left = failuresLeft.get(rid) ?? 2;
            failuresLeft.set(rid, left - 1);
            if (left > 0) throw new UpstreamUnavailableError("upstream 503");
            break;
          }
          case "down":
          case "broken":
            throw new UpstreamUnavailableError("upstream 503");
          case "rejects":
            throw new AppError("INVALID_ARGUMENT", "upstream rejected the request", {
              origin: "upstream",
              param: "messages",
            });
          case "breaks-mid":
            yield chunk(req.model, "partial");
            throw new UpstreamUnavailableError("connection reset");
          case "slow":
            yield chunk(req.model, "first");
            await gate;
            break;
        }
        yield chunk(req.model, `hello from ${req.model}`);
        yield chunk(req.model, "", true);
      },
      async embed(req) {
        calls.push(`${req.context?.requestId ?? ""}:${req.model}`);
        return { response: { model: req.model, data: [{ index: 0, values: [0.5, 0.25] }], usage: undefined } };
      },
      async listModels() {
        const info = (id: string, ready: boolean) =>
          ModelInfo.fromPartial({ id, engine: "local", device: "cpu", ready });
        return { models: [info("flaky", false), info("backup", true)] };
      },
      async countTokens() {
        throw new AppError("FAILED_PRECONDITION", "not scripted");
      },
    }),
  );
  return { server, calls, release: () => release?.() };
}

describe("router over gRPC", () => {
  let dir: string;
  let catalogPath: string;
  let inference: ReturnType<typeof scriptedInference>;
  let app: RouterApp;
  let client: RouterServiceClient;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "router-test-"));
    catalogPath = join(dir, "mesh.yaml");
    await writeFile(catalogPath, catalogYaml(baseModels));
    inference = scriptedInference();
    const inferencePort = await inference.server.listen("127.0.0.1", 0);
    inference.server.setServing(true);
    const config = await testRouterConfig({
      catalogPath,
      redisPrefix: `${uniqueName("router")}:`,
      inferenceAddr: `127.0.0.1:${inferencePort}`,
    });
    app = createApp(config, { logger, lifecycle: new Lifecycle({ logger, deadlineMs: 3_000 }) });
    await app.start();
    client = createGrpcClient(RouterServiceClient, `127.0.0.1:${app.host.grpcPort}`);
  });

  afterAll(async () => {
    inference?.release();
    client?.close();
    await app?.stop();
    await inference?.server.shutdown(100);
    await rm(dir, { recursive: true, force: true });
  });

  async function route(
    model: string,
    requestId = uniqueName("req"),
    routeWithFirstChunk = false,
    batchChunks = false,
  ): Promise<RouteResponse[]> {
    const out: RouteResponse[] = [];
    const stream = callStream(client.route.bind(client), {
      context: { requestId, keyId: "k", team: "", user: "", priority: 0 },
      request: ChatRequest.fromPartial({ model, messages: [{ role: 2, content: "hi" }] }),
      routeWithFirstChunk,
      batchChunks,
    });
    for await (const msg of stream) out.push(msg);
    return out;
  }

  const text = (msgs: RouteResponse[]) =>
    msgs.flatMap((m) => (m.chunk as ChatChunk | undefined)?.choices.map((c) => c.content) ?? []).join("");

  it("retries a failing model and then streams, with the route first", async () => {
    const rid = uniqueName("req");
    const msgs = await route("flaky-alias", rid);
    expect(msgs[0]?.route).toMatchObject({
      model: "flaky",
      provider: "local",
      cacheHit: false,
      attempts: 3,
      reason: "alias:flaky-alias",
    });
    expect(msgs.slice(1).every((m) => m.chunk !== undefined)).toBe(true);
    expect(text(msgs)).toBe("hello from flaky");
    expect(msgs.at(-1)?.chunk?.usage).toEqual({ inputTokens: 3, outputTokens: 2, cachedTokens: 0 });
    expect(inference.calls.filter((c) => c.startsWith(`${rid}:`))).toEqual([
      `${rid}:flaky`,
      `${rid}:flaky`,
      `${rid}:flaky`,
    ]);
  });

  it("sends the route on the first chunk when the caller asks, one message fewer", async () => {
    const apart = await route("flaky-alias");
    const together = await route("flaky-alias", uniqueName("req"), true);
    expect(together).toHaveLength(apart.length - 1);
    expect(together[0]?.route).toBeUndefined();
    expect(together[0]?.chunkRoute).toEqual(apart[0]?.route);
    expect(together[0]?.chunk).toEqual(apart[1]?.chunk);
    expect(text(together)).toBe("hello from flaky");
  });

  it("records a GenAI chat CLIENT span per attempt", async () => {
    spans.reset();
    await route("flaky");
    const chat = spans.getFinishedSpans().filter((s) => s.name === "chat flaky");
    expect(chat).toHaveLength(3);
    for (const s of chat) {
      expect(s.kind).toBe(SpanKind.CLIENT);
      expect(s.attributes).toMatchObject({
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "local",
        "gen_ai.request.model": "flaky",
      });
    }
    expect(chat.filter((s) => s.attributes["error.type"] === "UNAVAILABLE")).toHaveLength(2);
    expect(chat.at(-1)?.attributes).toMatchObject({
      "gen_ai.response.model": "flaky",
      "gen_ai.usage.input_tokens": 3,
      "gen_ai.usage.output_tokens": 2,
    });
    // The gRPC call to inference is a child of the attempt's span.
    const last = chat.at(-1);
    const rpc = spans
      .getFinishedSpans()
      .find(
        (s) =>
          s.name.endsWith("InferenceService/Generate") && s.parentSpanContext?.spanId === last?.spanContext().spanId,
      );
    expect(rpc).toBeDefined();
  });

  it("falls back to the second model when the first is unavailable", async () => {
    const rid = uniqueName("req");
    const msgs = await route("down", rid);
    expect(msgs[0]?.route).toMatchObject({ model: "backup", attempts: 2 });
    expect(text(msgs)).toBe("hello from backup");
    expect(inference.calls.filter((c) => c.startsWith(`${rid}:`))).toEqual([`${rid}:down`, `${rid}:backup`]);
  });

  it("surfaces an error after the first chunk as an error, without falling back", async () => {
    const rid = uniqueName("req");
    const seen: RouteResponse[] = [];
    const err = await (async () => {
      try {
        for await (const m of callStream(client.route.bind(client), {
          routeWithFirstChunk: false,
          batchChunks: false,
          context: { requestId: rid, keyId: "k", team: "", user: "", priority: 0 },
          request: ChatRequest.fromPartial({ model: "breaks-mid" }),
        }))
          seen.push(m);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(AppError);
    expect(err).toMatchObject({ code: "UNAVAILABLE" });
    expect(seen[0]?.route?.model).toBe("breaks-mid");
    expect(text(seen)).toBe("partial");
    expect(inference.calls.filter((c) => c.startsWith(`${rid}:`))).toEqual([`${rid}:breaks-mid`]);
  });

  it("answers NOT_FOUND model_not_found for an unknown model", async () => {
    await expect(route("no-such-model")).rejects.toMatchObject({
      code: "NOT_FOUND",
      reason: "model_not_found",
      param: "model",
    });
  });

  it("fails fast on a non-retryable error", async () => {
    const rid = uniqueName("req");
    await expect(route("rejects", rid)).rejects.toMatchObject({ code: "INVALID_ARGUMENT", param: "messages" });
    expect(inference.calls.filter((c) => c.startsWith(`${rid}:`))).toEqual([`${rid}:rejects`]);
  });

  it("resolves auto to the first ready model of the default tier", async () => {
    // ListModels refreshes the router's view of inference's readiness: flaky is not ready, backup is.
    await callUnary(client.listModels.bind(client), {});
    const rid = uniqueName("req");
    const msgs = await route("auto", rid);
    expect(msgs[0]?.route).toMatchObject({ model: "backup", attempts: 1 });
    expect(inference.calls.filter((c) => c.startsWith(`${rid}:`))).toEqual([`${rid}:backup`]);
  });

  it("rejects a chat request to an embedding model, and embeds through Embed", async () => {
    await expect(route("embedder")).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    const res = await callUnary(client.embed.bind(client), {
      context: { requestId: uniqueName("req"), keyId: "k", team: "", user: "", priority: 0 },
      request: { model: "embedder", input: ["a"], user: "" },
    });
    expect(res.route).toMatchObject({ model: "embedder", attempts: 1 });
    expect(res.response?.data[0]?.values).toEqual([0.5, 0.25]);
  });

  it("lists catalog models with aliases and tiers", async () => {
    const res = await callUnary(client.listModels.bind(client), {});
    const flaky = res.models.find((m) => m.id === "flaky");
    expect(flaky).toMatchObject({ engine: "local", aliases: ["flaky-alias"], tier: "small", ready: false });
    expect(res.models.find((m) => m.id === "backup")).toMatchObject({ ready: true, device: "cpu", tier: "small" });
    expect(res.models.find((m) => m.id === "embedder")).toMatchObject({ ready: false, tier: "" });
  });

  it("opens a shared breaker after consecutive failures and skips the model to its fallback", async () => {
    for (let i = 0; i < 3; i++) expect((await route("broken"))[0]?.route?.model).toBe("backup");
    expect(await app.breaker.state("broken")).toBe("open");
    const rid = uniqueName("req");
    const msgs = await route("broken", rid);
    expect(msgs[0]?.route).toMatchObject({ model: "backup", attempts: 1 });
    expect(inference.calls.filter((c) => c.startsWith(`${rid}:`))).toEqual([`${rid}:backup`]);
  });

  it("exports attempt, retry and fallback metrics", async () => {
    const res = await fetch(`http://127.0.0.1:${app.host.opsPort}/metrics`);
    const body = await res.text();
    expect(body).toMatch(/tokenmesh_router_attempts_total\{model="flaky",outcome="retryable_error"\} [1-9]/);
    expect(body).toMatch(/tokenmesh_router_attempts_total\{model="backup",outcome="ok"\} [1-9]/);
    expect(body).toMatch(/tokenmesh_router_retries_total\{model="flaky"\} [1-9]/);
    expect(body).toMatch(/tokenmesh_router_fallbacks_total\{from="down",to="backup"\} [1-9]/);
    expect(body).toMatch(/tokenmesh_router_breaker_state\{model="broken"\} 2/);
  });

  it("reloads the catalog without dropping a stream in flight", async () => {
    const stream = callStream(client.route.bind(client), {
      routeWithFirstChunk: false,
      batchChunks: false,
      context: { requestId: uniqueName("req"), keyId: "k", team: "", user: "", priority: 0 },
      request: ChatRequest.fromPartial({ model: "slow" }),
    });
    const first = await stream.next();
    expect(first.value?.route?.model).toBe("slow");
    await writeFile(
      catalogPath,
      catalogYaml([...baseModels.filter((m) => !m.includes("id: slow")), upstream("newcomer")]),
    );
    await waitFor(() => app.catalog.current.catalog.models.some((m) => m.id === "newcomer"), {
      description: "catalog reload",
    });
    inference.release();
    const rest: RouteResponse[] = [];
    for await (const m of stream) rest.push(m);
    expect(text(rest)).toBe("firsthello from slow");
    await expect(route("slow")).rejects.toMatchObject({ code: "NOT_FOUND" });
    expect((await route("newcomer"))[0]?.route?.model).toBe("newcomer");
  });
});

describe("RedisCircuitBreaker", () => {
  let redis: Redis;
  beforeAll(async () => {
    redis = new Redis(inject("redisUrl"));
  });
  afterAll(async () => {
    await redis?.quit();
  });

  it("opens after consecutive failures, lets one probe through after the cooldown, and closes on its success", async () => {
    const policy = { enabled: true, failureThreshold: 2, cooldownMs: 150 };
    const prefix = `${uniqueName("breaker")}:`;
    // One injected clock, moved by hand: the cooldown is exact, not a race against real time.
    let now = Date.now();
    const clock = () => now;
    // Two breakers on one Redis stand for two router replicas.
    // No renewal timer: the state is read only when the test says.
    const a = new RedisCircuitBreaker(redis, () => policy, logger, prefix, clock, 0);
    const b = new RedisCircuitBreaker(redis, () => policy, logger, prefix, clock, 0);
    await a.recordFailure("m");
    expect(await b.allow("m")).toBe(true);
    await b.recordFailure("m");
    expect(await a.state("m")).toBe("open");
    expect(await a.allow("m")).toBe(false);
    expect(await b.allow("m")).toBe(false);
    now += 149;
    expect(await a.allow("m")).toBe(false); // still open 1 ms before the cooldown ends
    now += 1;
    expect(await a.allow("m")).toBe(true);
    expect(await b.allow("m")).toBe(false);
    expect(await b.state("m")).toBe("half_open");
    await a.recordFailure("m");
    expect(await b.state("m")).toBe("open");
    now += 149;
    expect(await b.allow("m")).toBe(false);
    now += 1;
    expect(await b.allow("m")).toBe(true);
    await b.recordSuccess("m");
    expect(await a.state("m")).toBe("closed");
    expect(await a.allow("m")).toBe(true);
  });

  /**
   * A replica's breaker on a clock moved by hand, counting the ALLOW scripts it sends (the round trip a call waits
   * for); `other()` is a second replica on the same keys and clock. Neither runs the renewal timer.
   */
  function countingBreaker() {
    const policy = { enabled: true, failureThreshold: 1, cooldownMs: 60_000 };
    const prefix = `${uniqueName("breaker")}:`;
    const t = { now: Date.now(), evals: 0 };
    const clock = () => t.now;
    const counting = new Proxy(redis, {
      get(target, prop, receiver) {
        if (prop === "eval") t.evals++;
        const v = Reflect.get(target, prop, receiver);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
    // No renewal timer (renewWarm is called by hand): the state is read only when the test says.
    const a = new RedisCircuitBreaker(counting, () => policy, logger, prefix, clock, 0);
    const other = () => new RedisCircuitBreaker(redis, () => policy, logger, prefix, clock, 0);
    return { a, t, other };
  }

  it("re-reads a trusted closed state in the background before its trust ends, so no call waits for Redis", async () => {
    const { a, t, other } = countingBreaker();
    expect(await a.allow("m")).toBe(true);
    expect(t.evals).toBe(1);
    // Under steady traffic the trust is renewed ahead of its end: no call after the first asks.
    // A PING on the same connection answers after every command sent before it: the background re-read is done.
    for (let i = 0; i < 10; i++) {
      t.now += 60;
      expect(await a.allow("m")).toBe(true);
      await redis.ping();
    }
    expect(t.evals).toBe(1);
    // Another replica opens the breaker: the next re-read ends the trust, and the call after it asks and is refused.
    const b = other();
    await b.recordFailure("m");
    t.now += 150; // 40 ms of trust left (renewed at +540 until +790)
    expect(await a.allow("m")).toBe(true);
    await redis.ping();
    expect(await a.allow("m")).toBe(false);
    expect(t.evals).toBe(2);
  });

  it("keeps the trust of a recently called model renewed between sparse calls, and forgets it after 10 s", async () => {
    const { a, t, other } = countingBreaker();
    expect(await a.allow("m")).toBe(true);
    expect(t.evals).toBe(1);
    // A call every 2 s: between calls the timer (driven by hand here, every 150 ms of the injected clock) renews the
    // trust, so none of the calls asks Redis.
    const quiet = async (ms: number) => {
      for (let waited = 0; waited < ms; waited += 150) {
        t.now += 150;
        a.renewWarm();
        await redis.ping();
      }
    };
    for (let i = 0; i < 3; i++) {
      await quiet(2_000);
      expect(await a.allow("m")).toBe(true);
    }
    expect(t.evals).toBe(1);
    // Another replica opens the breaker during a quiet spell: a renewal sees it, and the next call asks and is refused.
    const b = other();
    await b.recordFailure("m");
    await quiet(300);
    expect(await a.allow("m")).toBe(false);
    expect(t.evals).toBe(2);
    // Closed again; then 10 s without a call: the model is forgotten, and the next call asks before going ahead.
    await b.recordSuccess("m");
    await redis.ping();
    await quiet(11_000);
    expect(await a.allow("m")).toBe(true);
    expect(t.evals).toBe(3);
  });

  it("renews the trust on its own timer by default, so a call after a quiet spell does not ask", async () => {
    const policy = { enabled: true, failureThreshold: 1, cooldownMs: 60_000 };
    const calls = { eval: 0, hget: 0 };
    const counting = new Proxy(redis, {
      get(target, prop, receiver) {
        if (prop === "eval" || prop === "hget") calls[prop]++;
        const v = Reflect.get(target, prop, receiver);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
    const breaker = new RedisCircuitBreaker(counting, () => policy, logger, `${uniqueName("breaker")}:`);
    expect(await breaker.allow("m")).toBe(true);
    const asked = Date.now();
    // Real time: wait until the trust of the first call has lapsed and the timer has renewed it at least twice.
    await waitFor(() => Date.now() - asked > 400 && calls.hget >= 2, { timeoutMs: 5_000, intervalMs: 20 });
    await redis.ping();
    expect(await breaker.allow("m")).toBe(true);
    expect(calls.eval).toBe(1);
    breaker.stop();
  });

  it("counts only consecutive failures", async () => {
    const policy = { enabled: true, failureThreshold: 2, cooldownMs: 60_000 };
    const breaker = new RedisCircuitBreaker(redis, () => policy, logger, `${uniqueName("breaker")}:`);
    await breaker.recordFailure("m");
    await breaker.recordSuccess("m");
    await breaker.recordFailure("m");
    expect(await breaker.state("m")).toBe("closed");
  });

  it("lets calls through when Redis is unreachable", async () => {
    const dead = new Redis("redis://127.0.0.1:1", {
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    dead.on("error", () => undefined);
    const breaker = new RedisCircuitBreaker(
      dead,
      () => ({ enabled: true, failureThreshold: 1, cooldownMs: 1000 }),
      logger,
    );
    expect(await breaker.allow("m")).toBe(true);
    await breaker.recordFailure("m");
    dead.disconnect();
  });
});
