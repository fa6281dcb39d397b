import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ChatChunk, ChatRequest } from "@tokenmesh/proto/common/v1/chat";
import { type GenerateResponse, InferenceServiceService } from "@tokenmesh/proto/inference/v1/inference";
import { type RouteResponse, RouterServiceClient } from "@tokenmesh/proto/router/v1/router";
import {
  AppError,
  callStream,
  createGrpcClient,
  GrpcServer,
  Lifecycle,
  UpstreamUnavailableError,
} from "@tokenmesh/runtime";
import { createLogger, registry } from "@tokenmesh/telemetry";
import { uniqueName, waitFor } from "@tokenmesh/testing";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { RedisResponseCache } from "../src/adapters/redis-response-cache.js";
import { createApp, type RouterApp } from "../src/app.js";
import { cacheKey, cacheScope } from "../src/domain/cache.js";
import { routerMetrics } from "../src/metrics.js";
import { testRouterConfig } from "./router-config.js";
import { inferenceServing } from "./scripted-inference.js";

const logger = createLogger({ service: "router-cache-test", level: "silent" });

// Local models: the router calls them through the scripted inference below (remote.int.test.ts covers providers).
const upstream = (id: string, extra = "") => `  - { id: ${id}, engine: local, source: ./${id}.gguf${extra} }`;

function catalogYaml(cache: string): string {
  return [
    "models:",
    upstream("det", ", aliases: [det-alias]"),
    upstream("down", ", fallbacks: [det]"),
    upstream("shared", ", shared_cache: true"),
    "routes:",
    "  retry: { max_attempts: 1, base_delay_ms: 1, max_delay_ms: 5 }",
    "  breaker: { enabled: false }",
    `  cache: ${cache}`,
    "",
  ].join("\n");
}

/** A call inference saw: which model, for which prompt, and how it ended. */
interface Seen {
  model: string;
  prompt: string;
  ended: "ok" | "error" | "cancelled" | "open";
}

/**
 * A scripted InferenceService. "det" answers `answer <n> to <prompt>` (n counts calls, so a replay is told apart
 * from a fresh answer), a finish reason, then usage; "down" is unavailable. The request id's prefix picks a
 * failure: `break_` fails after the first chunk, `hang_` stops after the first chunk until cancelled,
 * `nofinish_` never sends a finish reason, `held_` stops after the first chunk until the test calls `release(rid)`
 * (and then finishes, whether or not its caller is still there).
 */
function scriptedInference() {
  const seen: Seen[] = [];
  const gates = new Map<string, () => void>();
  const gate = (rid: string) => new Promise<void>((resolve) => gates.set(rid, resolve));
  let n = 0;
  const server = new GrpcServer({ logger });
  server.add(
    InferenceServiceService,
    inferenceServing({
      async *generate(req, ctx) {
        const rid = req.context?.requestId ?? "";
        const prompt = req.request?.messages.at(-1)?.content ?? "";
        const call: Seen = { model: req.model, prompt, ended: "open" };
        seen.push(call);
        const chunk = (choices: ChatChunk["choices"], usage?: ChatChunk["usage"]): GenerateResponse => ({
          chunk: { id: `chatcmpl-${n}`, created: 1_700_000_000 + n, model: req.model, choices, usage },
        });
        const delta = (content: string, finishReason = 0) => ({
          index: 0,
          role: 3,
          content,
          toolCalls: [],
          finishReason,
          refusal: "",
        });
        try {
          if (req.model === "down") throw new UpstreamUnavailableError("upstream 503");
          n++;
          yield chunk([delta(`answer ${n}`)]);
          if (rid.startsWith("break_")) throw new UpstreamUnavailableError("connection reset");
          if (rid.startsWith("hang_")) {
            await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve, { once: true }));
            call.ended = "cancelled";
            return;
          }
          if (rid.startsWith("held_")) await gate(rid);
          yield chunk([delta(` to ${prompt}`)]);
          yield chunk([delta("", rid.startsWith("nofinish_") ? 0 : 1)]);
          yield chunk([], { inputTokens: 7, outputTokens: 5, cachedTokens: 0 });
          call.ended = "ok";
        } catch (err) {
          call.ended = "error";
          throw err;
        }
      },
      async embed() {
        throw new AppError("FAILED_PRECONDITION", "not scripted");
      },
      async listModels() {
        return { models: [] };
      },
      async countTokens() {
        throw new AppError("FAILED_PRECONDITION", "not scripted");
      },
    }),
  );
  return {
    server,
    seen,
    calls: (prompt: string) => seen.filter((s) => s.prompt === prompt),
    /** Lets a `held_` generation go on (once it reached its gate). */
    release: async (rid: string) => {
      await waitFor(() => gates.has(rid), { description: `${rid} held` });
      gates.get(rid)?.();
    },
  };
}

/** Route calls whose caller went away while the router was still answering, from the gRPC server's metric. */
async function cancelledRoutes(): Promise<number> {
  const metric = await registry.getSingleMetric("tokenmesh_rpc_server_cancelled_total")?.get();
  return (metric?.values ?? []).filter((v) => v.labels.method === "Route").reduce((sum, v) => sum + v.value, 0);
}

interface RouteOptions {
  model?: string;
  /** The request context's team and key (default: no team, key "k"). */
  team?: string;
  keyId?: string;
  rid?: string;
  temperature?: number | undefined;
  seed?: number;
  metadata?: Record<string, string>;
  user?: string;
  stream?: boolean;
}

function chatRequest(prompt: string, o: RouteOptions = {}): ChatRequest {
  return ChatRequest.fromPartial({
    model: o.model ?? "det",
    messages: [{ role: 2, content: prompt }],
    temperature: "temperature" in o ? o.temperature : 0,
    seed: o.seed,
    metadata: o.metadata ?? {},
    user: o.user ?? "",
    stream: o.stream ?? false,
  });
}

async function route(client: RouterServiceClient, prompt: string, o: RouteOptions = {}): Promise<RouteResponse[]> {
  const out: RouteResponse[] = [];
  const stream = callStream(client.route.bind(client), {
    routeWithFirstChunk: false,
    batchChunks: false,
    context: {
      requestId: o.rid ?? uniqueName("req"),
      keyId: o.keyId ?? "k",
      team: o.team ?? "",
      user: "",
      priority: 0,
    },
    request: chatRequest(prompt, o),
  });
  for await (const msg of stream) out.push(msg);
  return out;
}

const text = (msgs: RouteResponse[]) => msgs.flatMap((m) => m.chunk?.choices.map((c) => c.content) ?? []).join("");
const chunks = (msgs: RouteResponse[]) => msgs.flatMap((m) => (m.chunk ? [m.chunk] : []));

describe("router exact cache over gRPC and Redis", () => {
  let dir: string;
  let inference: ReturnType<typeof scriptedInference>;
  let inferenceAddr: string;
  let redis: Redis;
  const apps: RouterApp[] = [];
  const clients: RouterServiceClient[] = [];
  const prefix = `${uniqueName("router-cache")}:`;
  let a: { app: RouterApp; client: RouterServiceClient };
  let b: { app: RouterApp; client: RouterServiceClient };

  async function startRouter(cache: string, redisPrefix: string) {
    const catalogPath = join(dir, `${uniqueName("mesh")}.yaml`);
    await writeFile(catalogPath, catalogYaml(cache));
    const config = await testRouterConfig({ catalogPath, redisPrefix, inferenceAddr });
    const app = createApp(config, { logger, lifecycle: new Lifecycle({ logger, deadlineMs: 3_000 }) });
    apps.push(app);
    await app.start();
    const client = createGrpcClient(RouterServiceClient, `127.0.0.1:${app.host.grpcPort}`);
    clients.push(client);
    return { app, client };
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "router-cache-test-"));
    inference = scriptedInference();
    inferenceAddr = `127.0.0.1:${await inference.server.listen("127.0.0.1", 0)}`;
    inference.server.setServing(true);
    redis = new Redis(inject("redisUrl"));
    // Two replicas on one Redis prefix: they must share entries.
    a = await startRouter("{ enabled: true, ttl_s: 300 }", prefix);
    b = await startRouter("{ enabled: true, ttl_s: 300 }", prefix);
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    for (const app of apps) await app.stop();
    await inference?.server.shutdown(100);
    await redis?.quit();
    await rm(dir, { recursive: true, force: true });
  });

  /** Routes on `via` and waits until the answer's cache write (if any) has landed in Redis. */
  async function settle(via: { app: RouterApp; client: RouterServiceClient }, prompt: string, o: RouteOptions = {}) {
    const msgs = await route(via.client, prompt, o);
    await via.app.cache.settled();
    return msgs;
  }

  it("serves a second identical request from the cache, with the same chunks and usage", async () => {
    const prompt = uniqueName("prompt");
    const first = await settle(a, prompt);
    expect(first[0]?.route).toMatchObject({ model: "det", provider: "local", cacheHit: false, attempts: 1 });
    expect(text(first)).toMatch(new RegExp(`^answer \\d+ to ${prompt}$`));

    // Another user, streamed, through an alias: same resolved model and same output-shaping fields.
    const second = await route(a.client, prompt, { user: "someone-else", stream: true, model: "det-alias" });
    expect(second[0]?.route).toMatchObject({ model: "det", provider: "local", cacheHit: true, attempts: 0 });
    expect(second.slice(1).every((m) => m.chunk !== undefined)).toBe(true);
    expect(chunks(second)).toEqual(chunks(first));
    expect(second.at(-1)?.chunk?.usage).toEqual({ inputTokens: 7, outputTokens: 5, cachedTokens: 0 });
    expect(inference.calls(prompt)).toHaveLength(1);
  });

  it("shares entries between router replicas", async () => {
    const prompt = uniqueName("prompt");
    const first = await settle(a, prompt, { seed: 7, temperature: 0.9 });
    const other = await route(b.client, prompt, { seed: 7, temperature: 0.9 });
    expect(other[0]?.route?.cacheHit).toBe(true);
    expect(chunks(other)).toEqual(chunks(first));
    expect(inference.calls(prompt)).toHaveLength(1);
  });

  it("misses when an output-shaping field differs", async () => {
    const prompt = uniqueName("prompt");
    await settle(a, prompt, { seed: 1 });
    expect((await route(a.client, prompt, { seed: 2 }))[0]?.route?.cacheHit).toBe(false);
    expect(inference.calls(prompt)).toHaveLength(2);
  });

  it("does not store an answer that failed mid-stream", async () => {
    const prompt = uniqueName("prompt");
    await expect(route(a.client, prompt, { rid: uniqueName("break") })).rejects.toMatchObject({ code: "UNAVAILABLE" });
    await a.app.cache.settled();
    const again = await settle(a, prompt);
    expect(again[0]?.route?.cacheHit).toBe(false);
    expect(inference.calls(prompt).map((c) => c.ended)).toEqual(["error", "ok"]);
    // The complete answer was stored.
    expect((await route(a.client, prompt))[0]?.route?.cacheHit).toBe(true);
  });

  it("never serves one tenant's cached answer to another, unless the model shares its cache", async () => {
    const prompt = uniqueName("prompt");
    await settle(a, prompt, { team: "red", keyId: "k-red" });
    expect((await route(a.client, prompt, { team: "red", keyId: "k-red-2" }))[0]?.route?.cacheHit).toBe(true);
    expect((await route(a.client, prompt, { team: "blue", keyId: "k-blue" }))[0]?.route?.cacheHit).toBe(false);
    // Without a team, the key is the tenant.
    await settle(a, prompt, { keyId: "solo-1" });
    expect((await route(a.client, prompt, { keyId: "solo-2" }))[0]?.route?.cacheHit).toBe(false);
    // A model marked shared_cache answers every tenant from one entry.
    await settle(a, prompt, { model: "shared", team: "red" });
    expect((await route(a.client, prompt, { model: "shared", team: "blue" }))[0]?.route?.cacheHit).toBe(true);
  });

  it("does not store a stream the caller cancelled, and stops its generation", async () => {
    const prompt = uniqueName("prompt");
    const stream = callStream(a.client.route.bind(a.client), {
      routeWithFirstChunk: false,
      batchChunks: false,
      context: { requestId: uniqueName("hang"), keyId: "k", team: "", user: "", priority: 0 },
      request: chatRequest(prompt, { stream: true }),
    });
    expect((await stream.next()).value?.route?.cacheHit).toBe(false);
    expect((await stream.next()).value?.chunk?.choices[0]?.content).toMatch(/^answer /);
    await stream.return(undefined);
    await waitFor(() => inference.calls(prompt)[0]?.ended === "cancelled", { description: "inference cancelled" });
    await a.app.cache.settled();
    const again = await route(a.client, prompt);
    expect(again[0]?.route?.cacheHit).toBe(false);
    expect(inference.calls(prompt)).toHaveLength(2);
  });

  it("reads a non-streamed answer whose caller left to its end (it is billed), without caching it", async () => {
    const prompt = uniqueName("prompt");
    const rid = uniqueName("held");
    const stream = callStream(a.client.route.bind(a.client), {
      routeWithFirstChunk: false,
      batchChunks: false,
      context: { requestId: rid, keyId: "k", team: "", user: "", priority: 0 },
      request: chatRequest(prompt),
    });
    expect((await stream.next()).value?.route?.cacheHit).toBe(false);
    const cancelledBefore = await cancelledRoutes();
    await stream.return(undefined);
    // The router has seen its caller go before the answer goes on.
    await waitFor(async () => (await cancelledRoutes()) > cancelledBefore, { description: "Route call cancelled" });
    await inference.release(rid);
    await waitFor(() => inference.calls(prompt)[0]?.ended !== "open", { description: "generation ended" });
    expect(inference.calls(prompt)[0]?.ended).toBe("ok");
    await a.app.cache.settled();
    expect((await route(a.client, prompt))[0]?.route?.cacheHit).toBe(false);
  });

  it("does not store an answer without a finish reason", async () => {
    const prompt = uniqueName("prompt");
    await settle(a, prompt, { rid: uniqueName("nofinish") });
    expect((await route(a.client, prompt))[0]?.route?.cacheHit).toBe(false);
    expect(inference.calls(prompt)).toHaveLength(2);
  });

  it("bypasses the cache for metadata cache=no and for non-deterministic requests", async () => {
    const prompt = uniqueName("prompt");
    await settle(a, prompt);
    const opted = await settle(a, prompt, { metadata: { cache: "no" } });
    expect(opted[0]?.route?.cacheHit).toBe(false);
    expect(inference.calls(prompt)).toHaveLength(2);

    const hot = uniqueName("prompt");
    await settle(a, hot, { temperature: 0.7 });
    expect((await settle(a, hot, { temperature: 0.7 }))[0]?.route?.cacheHit).toBe(false);
    expect((await route(a.client, hot, { temperature: undefined }))[0]?.route?.cacheHit).toBe(false);
    expect(inference.calls(hot)).toHaveLength(3);
  });

  it("refreshes an entry for metadata cache=refresh", async () => {
    const prompt = uniqueName("prompt");
    const first = await settle(a, prompt);
    const refreshed = await settle(a, prompt, { metadata: { cache: "refresh" } });
    expect(refreshed[0]?.route?.cacheHit).toBe(false);
    expect(text(refreshed)).not.toBe(text(first));
    const replay = await route(b.client, prompt);
    expect(replay[0]?.route?.cacheHit).toBe(true);
    expect(text(replay)).toBe(text(refreshed));
    expect(inference.calls(prompt)).toHaveLength(2);
  });

  it("stores a fallback's answer under the model that served it", async () => {
    const prompt = uniqueName("prompt");
    const first = await settle(a, prompt, { model: "down" });
    expect(first[0]?.route).toMatchObject({ model: "det", cacheHit: false, attempts: 2 });
    const direct = await route(a.client, prompt, { model: "det" });
    expect(direct[0]?.route).toMatchObject({ model: "det", cacheHit: true });
    expect(text(direct)).toBe(text(first));
  });

  it("misses again once the entry's TTL has passed", async () => {
    const ttlPrefix = `${uniqueName("router-ttl")}:`;
    const short = await startRouter("{ enabled: true, ttl_s: 1 }", ttlPrefix);
    const prompt = uniqueName("prompt");
    await settle(short, prompt);
    expect((await route(short.client, prompt))[0]?.route?.cacheHit).toBe(true);
    const stored = `${ttlPrefix}cache:${cacheKey("det", chatRequest(prompt), cacheScope({ team: "", keyId: "k" }, false))}`;
    const ttl = await redis.pttl(stored);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(1_000);
    await waitFor(async () => (await redis.exists(stored)) === 0, { timeoutMs: 5_000, description: "entry expiry" });
    expect((await route(short.client, prompt))[0]?.route?.cacheHit).toBe(false);
    expect(inference.calls(prompt)).toHaveLength(2);
  });

  it("exports hit, miss and bypass counts", async () => {
    const res = await fetch(`http://127.0.0.1:${a.app.host.opsPort}/metrics`);
    const body = await res.text();
    for (const result of ["hit", "miss", "bypass"]) {
      expect(body).toMatch(new RegExp(`tokenmesh_router_cache_requests_total\\{result="${result}"\\} [1-9]`));
    }
    expect(body).toMatch(/tokenmesh_router_cache_store_failures_total 0/);
  });
});

describe("RedisResponseCache", () => {
  let redis: Redis;
  beforeAll(async () => {
    redis = new Redis(inject("redisUrl"));
    // The cache treats a connection that is not ready yet as unreachable.
    await redis.ping();
  });
  afterAll(async () => {
    await redis?.quit();
  });

  const answer: ChatChunk[] = [
    {
      id: "c",
      created: 1,
      model: "m",
      choices: [{ index: 0, role: 3, content: "x".repeat(200), toolCalls: [], finishReason: 1, refusal: "" }],
    },
    { id: "c", created: 1, model: "m", choices: [], usage: { inputTokens: 1, outputTokens: 1, cachedTokens: 0 } },
  ];

  it("round-trips an answer, and does not store one over max_entry_bytes", async () => {
    const prefix = `${uniqueName("cache")}:`;
    const cache = new RedisResponseCache(redis, logger, { prefix });
    const small = cache.record("k1", "m", { ttlMs: 60_000, maxEntryBytes: 10_000 });
    for (const c of answer) small.add(c);
    expect(small.finish()).toBe("stored");
    await cache.settled();
    expect(await cache.lookup("k1")).toEqual({ model: "m", chunks: answer });

    const big = cache.record("k2", "m", { ttlMs: 60_000, maxEntryBytes: 100 });
    for (const c of answer) big.add(c);
    expect(big.finish()).toBe("too_large");
    await cache.settled();
    expect(await redis.exists(`${prefix}cache:k2`)).toBe(0);
    expect(await cache.lookup("k2")).toBeUndefined();
  });

  it("reads an unreadable entry as a miss", async () => {
    const prefix = `${uniqueName("cache")}:`;
    await redis.set(`${prefix}cache:bad`, "{not json", "PX", 60_000);
    expect(await new RedisResponseCache(redis, logger, { prefix }).lookup("bad")).toBeUndefined();
  });

  it("misses and counts a store failure when Redis is unreachable, without throwing", async () => {
    const dead = new Redis("redis://127.0.0.1:1", {
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    dead.on("error", () => undefined);
    const cache = new RedisResponseCache(dead, logger);
    const failures = async () => (await routerMetrics.cacheStoreFailures.get()).values[0]?.value ?? 0;
    const before = await failures();
    expect(await cache.lookup("k")).toBeUndefined();
    const recorder = cache.record("k", "m", { ttlMs: 1_000, maxEntryBytes: 10_000 });
    for (const c of answer) recorder.add(c);
    expect(recorder.finish()).toBe("stored");
    await cache.settled();
    expect(await failures()).toBe(before + 1);
    dead.disconnect();
  });
});
