import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DeliverPolicy, jetstream } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { decodeEvent, UsageServedBatchEvent } from "@tokenmesh/events";
import { ChatRequest, type Usage } from "@tokenmesh/proto/common/v1/chat";
import type { UsageRecorded } from "@tokenmesh/proto/events/v1/events";
import { type RouteInfo, RouterServiceClient } from "@tokenmesh/proto/router/v1/router";
import { callStream, createGrpcClient, Lifecycle } from "@tokenmesh/runtime";
import { createLogger } from "@tokenmesh/telemetry";
import { type FakeUpstream, startFakeOpenAI, uniqueName, waitFor } from "@tokenmesh/testing";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createApp, type RouterApp } from "../src/app.js";
import { testRouterConfig } from "./router-config.js";

// Hedged requests against a fake OpenAI upstream whose every 10th request waits 400 ms before answering (a 10 %
// slow tail): the same model with and without `hedge`, requests one after another.

const logger = createLogger({ service: "router-hedge-test", level: "silent" });
const KEY = "sk-router-hedge";
const TAIL_MS = 400;

describe("hedged requests through the router", () => {
  let dir: string;
  let upstream: FakeUpstream;
  let app: RouterApp;
  let client: RouterServiceClient;
  let nc: NatsConnection;

  beforeAll(async () => {
    process.env.ROUTER_HEDGE_TEST_KEY = KEY;
    upstream = await startFakeOpenAI({ apiKey: KEY, behavior: { slowTail: { every: 10, delayMs: TAIL_MS } } });
    dir = await mkdtemp(join(tmpdir(), "router-hedge-"));
    const model = (id: string, extra = "") =>
      `  - { id: ${id}, engine: openai, base_url: "${upstream.url}", api_key_env: ROUTER_HEDGE_TEST_KEY, upstream_model: up${extra} }`;
    const catalogPath = join(dir, "mesh.yaml");
    await writeFile(
      catalogPath,
      [
        "models:",
        model("plain"),
        model("hedged", ", hedge: { after_ms: 50, max: 1 }"),
        model("hedged-p", ", hedge: { after_percentile: 80, after_ms: 50, to: plain, max: 1 }"),
        "",
      ].join("\n"),
    );
    const config = await testRouterConfig({ catalogPath, redisPrefix: `${uniqueName("router-hedge")}:` });
    app = createApp(config, { logger, lifecycle: new Lifecycle({ logger, deadlineMs: 3_000 }) });
    await app.start();
    client = createGrpcClient(RouterServiceClient, `127.0.0.1:${app.host.grpcPort}`);
    nc = await connect({ servers: inject("natsUrl") });
  });

  afterAll(async () => {
    client?.close();
    await nc?.close();
    await app?.stop();
    await upstream?.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** One streamed request: time to the first chunk (ms), the route, and the usage the client saw. */
  async function timed(model: string) {
    const context = { requestId: uniqueName("req"), keyId: "k", team: "", user: "", priority: 0 };
    const started = performance.now();
    let ttft: number | undefined;
    let route: RouteInfo | undefined;
    let usage: Usage | undefined;
    for await (const msg of callStream(client.route.bind(client), {
      routeWithFirstChunk: false,
      batchChunks: false,
      context,
      request: ChatRequest.fromPartial({ model, stream: true, messages: [{ role: 2, content: "one two three" }] }),
    })) {
      if (msg.route) route = msg.route;
      if (msg.chunk) {
        ttft ??= performance.now() - started;
        if (msg.chunk.usage) usage = msg.chunk.usage;
      }
    }
    return { requestId: context.requestId, ttft: ttft ?? Number.NaN, route: route!, usage: usage! };
  }

  const p99 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.ceil(0.99 * xs.length) - 1] as number;

  /** A served-usage report of the request that satisfies `ok` (a request may be reported more than once, as it grows). */
  async function servedFor(requestId: string, ok: (e: UsageRecorded) => boolean = () => true) {
    return waitFor(
      async () => {
        const consumer = await jetstream(nc).consumers.get("LLM_USAGE", {
          filter_subjects: UsageServedBatchEvent.subject,
          deliver_policy: DeliverPolicy.All,
        });
        const messages = await consumer.fetch({ max_messages: 10_000, expires: 1_000 });
        for await (const m of messages) {
          const e = decodeEvent(UsageServedBatchEvent, m.data).reports.find((r) => r.requestId === requestId && ok(r));
          if (e !== undefined) return e;
        }
        return undefined;
      },
      { timeoutMs: 10_000, description: `served usage of ${requestId}` },
    );
  }

  it("cuts p99 time to first token under a 10 % slow tail, and bills both attempts", async () => {
    const plain: number[] = [];
    for (let i = 0; i < 30; i++) plain.push((await timed("plain")).ttft);
    const hedged: Awaited<ReturnType<typeof timed>>[] = [];
    for (let i = 0; i < 30; i++) hedged.push(await timed("hedged"));

    expect(p99(plain)).toBeGreaterThanOrEqual(TAIL_MS);
    expect(p99(hedged.map((h) => h.ttft))).toBeLessThan(p99(plain) / 2);

    const won = hedged.filter((h) => h.route.reason.includes("hedge=won:hedged"));
    expect(won.length).toBeGreaterThanOrEqual(2);
    // The winner's usage reached the client; the cancelled loser had the prompt too, and cost hears of both.
    const one = won[0]!;
    // Reports grow as attempts end (the loser is recorded when it is cancelled, the winner when its usage comes).
    const served = await servedFor(one.requestId, (e) => e.estimated && e.outputTokens > 0);
    expect(served.model).toBe("hedged");
    expect(served.inputTokens).toBeGreaterThan(one.usage.inputTokens);
    expect(served.outputTokens).toBe(one.usage.outputTokens);
    expect(served.estimated).toBe(true);
    // The loser's connection was closed at once, not left to answer.
    const closed = await Promise.all(upstream.requests.map((r) => r.closed));
    expect(closed.filter((c) => c === "aborted").length).toBeGreaterThanOrEqual(won.length);
  });

  it("hedges by the model's shared percentile once it has samples, to the `to` model", async () => {
    for (let i = 0; i < 25; i++) await timed("hedged-p");
    await app.latency.sync();
    const results: Awaited<ReturnType<typeof timed>>[] = [];
    for (let i = 0; i < 20; i++) results.push(await timed("hedged-p"));
    const toPlain = results.filter((r) => r.route.reason.includes("hedge=won:plain"));
    expect(toPlain.length).toBeGreaterThanOrEqual(1);
    expect(toPlain[0]!.route.model).toBe("plain");
    expect(p99(results.map((r) => r.ttft))).toBeLessThan(TAIL_MS);
  });
});
