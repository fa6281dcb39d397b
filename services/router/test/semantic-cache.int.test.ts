import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ChatRequest } from "@tokenmesh/proto/common/v1/chat";
import { CacheKind, type RouteResponse, RouterServiceClient } from "@tokenmesh/proto/router/v1/router";
import { callStream, createGrpcClient, Lifecycle } from "@tokenmesh/runtime";
import { createLogger } from "@tokenmesh/telemetry";
import { type FakeUpstream, startFakeOpenAI, uniqueName, wordsEmbedding } from "@tokenmesh/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp, type RouterApp } from "../src/app.js";
import { routerMetrics } from "../src/metrics.js";
import { testRouterConfig } from "./router-config.js";

// The semantic cache end to end over gRPC: chat answers from a fake OpenAI upstream, embeddings from a second fake
// in its bag-of-words mode (`+words`: texts sharing most words are close, unlike the default hash vectors), the
// store in an embedded PGlite with pgvector (in memory, one per router), the exact cache in the real Redis.

const logger = createLogger({ service: "router-semantic-test", level: (process.env.TEST_LOG as "warn") ?? "silent" });
const KEY = "sk-semantic-test";

interface SemanticSettings {
  threshold?: number;
  ttl_s?: number;
  max_entries?: number;
  scope?: "team" | "key" | "global";
  timeout_ms?: number;
}

function catalogYaml(chatUrl: string, embedUrl: string, s: SemanticSettings): string {
  const remote = (id: string, url: string, model: string, extra = "") =>
    `  - { id: ${id}, engine: openai, base_url: "${url}", api_key_env: ROUTER_SEMANTIC_TEST_KEY, upstream_model: "${model}"${extra} }`;
  const semantic = { enabled: true, embedding_model: "embed", threshold: 0.9, timeout_ms: 2_000, ...s };
  return [
    "models:",
    remote("chat", chatUrl, "chat-up"),
    remote("embed", embedUrl, "embed-up+words", ", kind: embedding"),
    "routes:",
    "  retry: { max_attempts: 1, base_delay_ms: 1, max_delay_ms: 5 }",
    "  breaker: { enabled: false }",
    "  cache: { enabled: true }",
    `  semantic_cache: ${JSON.stringify(semantic)}`,
    "",
  ].join("\n");
}

interface Caller {
  team?: string;
  keyId?: string;
}

interface Ask extends Caller {
  temperature?: number;
  stream?: boolean;
  metadata?: Record<string, string>;
}

const text = (msgs: RouteResponse[]) => msgs.flatMap((m) => m.chunk?.choices.map((c) => c.content) ?? []).join("");
const chunks = (msgs: RouteResponse[]) => msgs.flatMap((m) => (m.chunk ? [m.chunk] : []));
const cosine = (a: string, b: string) => {
  const x = wordsEmbedding(a, 256);
  const y = wordsEmbedding(b, 256);
  return x.reduce((n, v, i) => n + v * y[i]!, 0);
};
/**
 * A word no other test uses, so every test's prompts are its own. With `avoid`, one that lands in none of the
 * embedding dimensions that text's words use: a word sharing a dimension with one of them (6 in 256 for a six-word
 * prompt) would move the prompts' cosine, e.g. lift two prompts that differ in one word from 0.875 to exactly 0.9.
 */
const word = (avoid = ""): string => {
  const used = wordsEmbedding(avoid, 256);
  for (;;) {
    const w = uniqueName("w").split("_")[1]!;
    if (wordsEmbedding(w, 256).every((v, i) => v === 0 || used[i] === 0)) return w;
  }
};

async function lookups(result: string): Promise<number> {
  const metric = await routerMetrics.semanticLookups.get();
  return metric.values.find((v) => v.labels.result === result)?.value ?? 0;
}

describe("router semantic cache over gRPC, pgvector (PGlite) and a fake embedding model", () => {
  let dir: string;
  let chat: FakeUpstream;
  let embeddings: FakeUpstream;
  const running: { app: RouterApp; client: RouterServiceClient }[] = [];
  let clock = Date.now();

  async function startRouter(settings: SemanticSettings, env: Record<string, string> = {}) {
    const catalogPath = join(dir, `${uniqueName("mesh")}.yaml`);
    await writeFile(catalogPath, catalogYaml(chat.url, embeddings.url, settings));
    const config = await testRouterConfig({ catalogPath, redisPrefix: `${uniqueName("router-semantic")}:`, env });
    const app = createApp(
      config,
      { logger, lifecycle: new Lifecycle({ logger, deadlineMs: 3_000 }) },
      { now: () => clock },
    );
    await app.start();
    const client = createGrpcClient(RouterServiceClient, `127.0.0.1:${app.host.grpcPort}`);
    const router = { app, client };
    running.push(router);
    return router;
  }

  type Router = Awaited<ReturnType<typeof startRouter>>;

  async function ask(via: Router, prompt: string, o: Ask = {}): Promise<RouteResponse[]> {
    const out: RouteResponse[] = [];
    const stream = callStream(via.client.route.bind(via.client), {
      routeWithFirstChunk: false,
      batchChunks: false,
      context: { requestId: uniqueName("req"), keyId: o.keyId ?? "key-1", team: o.team ?? "", user: "", priority: 0 },
      request: ChatRequest.fromPartial({
        model: "chat",
        messages: [
          { role: 1, content: "You answer in one line." },
          { role: 2, content: prompt },
        ],
        temperature: o.temperature ?? 0.8,
        stream: o.stream ?? false,
        metadata: o.metadata ?? {},
      }),
    });
    for await (const msg of stream) out.push(msg);
    return out;
  }

  /** Asks, then waits until the answer's semantic write (if any) and the trim after it have ended. */
  async function settle(via: Router, prompt: string, o: Ask = {}): Promise<RouteResponse[]> {
    const msgs = await ask(via, prompt, o);
    await via.app.semantic.settled();
    return msgs;
  }

  /** Chat completions the upstream received whose last message contained `tag`. */
  const modelCalls = (tag: string) =>
    chat.requests.filter((r) => JSON.stringify((r.body as { messages?: unknown })?.messages ?? "").includes(tag))
      .length;

  let main: Router;

  beforeAll(async () => {
    process.env.ROUTER_SEMANTIC_TEST_KEY = KEY;
    chat = await startFakeOpenAI({ apiKey: KEY });
    embeddings = await startFakeOpenAI({ apiKey: KEY });
    dir = await mkdtemp(join(tmpdir(), "router-semantic-"));
    main = await startRouter({ ttl_s: 60 });
  });

  afterAll(async () => {
    for (const r of running) {
      r.client.close();
      await r.app.stop();
    }
    await chat?.close();
    await embeddings?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("answers a near-duplicate non-deterministic request from a stored answer, streamed when asked", async () => {
    const w = word();
    const first = `please tell me the capital city of france ${w}`;
    const second = `tell me the capital city of france ${w}`;
    const hitsBefore = await lookups("hit");
    const stored = await settle(main, first, { team: "red" });
    expect(stored[0]?.route).toMatchObject({
      model: "chat",
      cacheHit: false,
      cacheKind: CacheKind.CACHE_KIND_UNSPECIFIED,
    });
    expect(text(stored)).toBe(first);

    const replay = await ask(main, second, { team: "red", temperature: 1.1, stream: true });
    const route = replay[0]?.route;
    expect(route).toMatchObject({ model: "chat", provider: "openai", cacheHit: true, attempts: 0 });
    expect(route?.cacheKind).toBe(CacheKind.CACHE_KIND_SEMANTIC);
    expect(route?.reason).toContain("cache=semantic");
    // The similarity the store computed is the cosine of the two texts' embeddings (float32 on the wire).
    expect(route?.cacheSimilarity).toBeCloseTo(cosine(first, second), 4);
    expect(route?.cacheSimilarity).toBeGreaterThanOrEqual(0.9);
    expect(route?.cacheSimilarity).toBeLessThan(1);
    expect(replay.slice(1).every((m) => m.chunk !== undefined)).toBe(true);
    expect(chunks(replay)).toEqual(chunks(stored));
    expect(replay.at(-1)?.chunk?.usage).toEqual(stored.at(-1)?.chunk?.usage);
    expect(modelCalls(w)).toBe(1);
    expect(await lookups("hit")).toBe(hitsBefore + 1);
  });

  it("leaves a deterministic repeat to the exact cache, which is checked first", async () => {
    const w = word();
    const prompt = `how many legs does a spider have ${w}`;
    await settle(main, prompt, { team: "red", temperature: 0 });
    const again = await ask(main, prompt, { team: "red", temperature: 0 });
    expect(again[0]?.route).toMatchObject({
      cacheHit: true,
      cacheKind: CacheKind.CACHE_KIND_EXACT,
      cacheSimilarity: 0,
    });
    // Not deterministic: the exact cache passes, the semantic one answers the very same text.
    const warm = await ask(main, prompt, { team: "red", temperature: 0.7 });
    expect(warm[0]?.route?.cacheKind).toBe(CacheKind.CACHE_KIND_SEMANTIC);
    expect(warm[0]?.route?.cacheSimilarity).toBeCloseTo(1, 5);
    expect(modelCalls(w)).toBe(1);
  });

  it("misses below the threshold, and records how close the nearest answer was", async () => {
    const w = word("what is the capital city of france germany");
    const france = `what is the capital city of france ${w}`;
    const germany = `what is the capital city of germany ${w}`;
    expect(cosine(france, germany)).toBeLessThan(0.9);
    await settle(main, france, { team: "red" });
    const observed = async () =>
      (await routerMetrics.semanticSimilarity.get()).values.find(
        (v) => v.metricName === "tokenmesh_router_semantic_cache_similarity_ratio_count",
      )?.value;
    const before = (await observed()) ?? 0;
    const missesBefore = await lookups("miss");
    const other = await settle(main, germany, { team: "red" });
    expect(other[0]?.route).toMatchObject({ cacheHit: false, cacheSimilarity: 0 });
    expect(text(other)).toBe(germany);
    expect(modelCalls(w)).toBe(2);
    expect(await lookups("miss")).toBe(missesBefore + 1);
    expect(await observed()).toBe(before + 1);
    // Both are stored now: each finds itself.
    expect((await ask(main, france, { team: "red" }))[0]?.route?.cacheHit).toBe(true);
    expect((await ask(main, germany, { team: "red" }))[0]?.route?.cacheHit).toBe(true);
  });

  it("never answers one team from another team's answers, nor one key from another's without a team", async () => {
    const w = word();
    const prompt = `which planet is closest to the sun ${w}`;
    await settle(main, prompt, { team: "red" });
    expect((await settle(main, prompt, { team: "blue" }))[0]?.route?.cacheHit).toBe(false);
    expect((await ask(main, prompt, { team: "blue", keyId: "key-2" }))[0]?.route?.cacheHit).toBe(true);
    expect((await ask(main, prompt, { team: "red", keyId: "key-3" }))[0]?.route?.cacheHit).toBe(true);
    // Without a team, a key is its own scope.
    expect((await settle(main, prompt, { keyId: "solo-a" }))[0]?.route?.cacheHit).toBe(false);
    expect((await ask(main, prompt, { keyId: "solo-b" }))[0]?.route?.cacheHit).toBe(false);
    expect((await ask(main, prompt, { keyId: "solo-a" }))[0]?.route?.cacheHit).toBe(true);
    expect(modelCalls(w)).toBe(4);
  });

  it("shares answers between teams under scope global", async () => {
    const shared = await startRouter({ scope: "global" });
    const w = word();
    const prompt = `what colour is the sky on a clear day ${w}`;
    await settle(shared, prompt, { team: "red" });
    const other = await ask(shared, `what colour is the sky on a clear day please ${w}`, { team: "blue", keyId: "x" });
    expect(other[0]?.route?.cacheKind).toBe(CacheKind.CACHE_KIND_SEMANTIC);
    expect(modelCalls(w)).toBe(1);
  });

  it("honours metadata cache=no and cache=refresh", async () => {
    const w = word();
    const prompt = `name a prime number larger than ten ${w}`;
    await settle(main, prompt, { team: "red" });
    expect((await ask(main, prompt, { team: "red", metadata: { cache: "no" } }))[0]?.route?.cacheHit).toBe(false);
    expect((await settle(main, prompt, { team: "red", metadata: { cache: "refresh" } }))[0]?.route?.cacheHit).toBe(
      false,
    );
    expect((await ask(main, prompt, { team: "red" }))[0]?.route?.cacheHit).toBe(true);
    expect(modelCalls(w)).toBe(3);
  });

  it("stops serving an answer once its ttl_s has passed, and trims it from the store", async () => {
    const w = word();
    const prompt = `how long is a marathon in kilometres ${w}`;
    await settle(main, prompt, { team: "ttl" });
    expect((await ask(main, prompt, { team: "ttl" }))[0]?.route?.cacheHit).toBe(true);
    const entries = await main.app.semantic.store.count();
    clock += 60_000;
    expect((await settle(main, prompt, { team: "ttl" }))[0]?.route?.cacheHit).toBe(false);
    expect(modelCalls(w)).toBe(2);
    // The trim after that write deleted every entry the clock expired (this one and the earlier tests').
    expect(await main.app.semantic.store.count()).toBeLessThan(entries);
    expect((await ask(main, prompt, { team: "ttl" }))[0]?.route?.cacheHit).toBe(true);
  });

  it("keeps at most max_entries answers, evicting the oldest", async () => {
    const small = await startRouter({ max_entries: 3 });
    const w = word();
    const prompts = ["alpha", "bravo", "charlie", "delta", "echo"].map((p) => `${p} ${p} ${p} ${w}`);
    for (const p of prompts) await settle(small, p, { team: "red" });
    expect(await small.app.semantic.store.count()).toBe(3);
    expect((await ask(small, prompts[4]!, { team: "red" }))[0]?.route?.cacheHit).toBe(true);
    expect((await ask(small, prompts[2]!, { team: "red" }))[0]?.route?.cacheHit).toBe(true);
    expect((await ask(small, prompts[0]!, { team: "red" }))[0]?.route?.cacheHit).toBe(false);
    const evictions = (await routerMetrics.semanticEvictions.get()).values.find((v) => v.labels.reason === "size");
    expect(evictions?.value).toBeGreaterThanOrEqual(2);
  });

  it("costs a request no more than timeout_ms when the embedding model is slow", async () => {
    const budgeted = await startRouter({ timeout_ms: 300 });
    const w = word();
    embeddings.setBehavior({ firstByteDelayMs: 5_000 });
    try {
      const before = await lookups("timeout");
      const started = performance.now();
      const msgs = await ask(budgeted, `is a tomato a fruit ${w}`, { team: "red" });
      const elapsed = performance.now() - started;
      expect(msgs[0]?.route?.cacheHit).toBe(false);
      expect(text(msgs)).toBe(`is a tomato a fruit ${w}`);
      // The budget plus the fake model's few milliseconds, far from the embedding's 5 s.
      expect(elapsed).toBeLessThan(300 + 1_500);
      expect(await lookups("timeout")).toBe(before + 1);
    } finally {
      embeddings.setBehavior();
    }
  });

  it("costs a request no more than timeout_ms when the store does not answer, then skips the store", async () => {
    // A PostgreSQL server that accepts connections and never says a word.
    const sockets: Socket[] = [];
    const silent: Server = createServer((s) => sockets.push(s));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const port = (silent.address() as { port: number }).port;
    try {
      const down = await startRouter(
        { timeout_ms: 300 },
        { ROUTER_SEMANTIC_CACHE_URL: `postgres://tokenmesh@127.0.0.1:${port}/tokenmesh` },
      );
      const w = word();
      const timeoutsBefore = await lookups("timeout");
      const errorsBefore = await lookups("error");
      let started = performance.now();
      const first = await ask(down, `why is the sea salty ${w}`, { team: "red" });
      expect(performance.now() - started).toBeLessThan(300 + 1_500);
      expect(first[0]?.route?.cacheHit).toBe(false);
      expect(text(first)).toBe(`why is the sea salty ${w}`);
      expect(await lookups("timeout")).toBe(timeoutsBefore + 1);

      // Backing off: the next request does not wait for the store at all.
      started = performance.now();
      const second = await ask(down, `why is the sea salty ${w}`, { team: "red" });
      expect(performance.now() - started).toBeLessThan(1_000);
      expect(text(second)).toBe(`why is the sea salty ${w}`);
      expect(await lookups("error")).toBe(errorsBefore + 1);
      expect(modelCalls(w)).toBe(2);
    } finally {
      for (const s of sockets) s.destroy();
      silent.close();
    }
  });

  it("exports lookups by result and the similarity histogram", async () => {
    const body = await (await fetch(`http://127.0.0.1:${main.app.host.opsPort}/metrics`)).text();
    for (const result of ["hit", "miss", "timeout", "error", "bypass"]) {
      expect(body).toMatch(new RegExp(`tokenmesh_router_semantic_cache_lookups_total\\{result="${result}"\\} [1-9]`));
    }
    expect(body).toMatch(/tokenmesh_router_semantic_cache_similarity_ratio_bucket\{le="0.95"\} [1-9]/);
    expect(body).toMatch(/tokenmesh_router_semantic_cache_lookup_duration_seconds_count\{result="hit"\} [1-9]/);
  });
});
