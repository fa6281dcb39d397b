import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Metadata } from "@grpc/grpc-js";
import {
  connectNats,
  decodeEvent,
  encodeEvent,
  JobSubmittedEvent,
  jetstream,
  jetstreamManager,
  type NatsConnection,
  Subjects,
  UsageRecordedEvent,
} from "@tokenmesh/events";
import { FinishReason, Role } from "@tokenmesh/proto/common/v1/chat";
import type { UsageRecorded } from "@tokenmesh/proto/events/v1/events";
import { GatewayServiceClient, JobStatus } from "@tokenmesh/proto/gateway/v1/gateway";
import {
  type RouteRequest,
  RouteResponse,
  type EmbedRequest as RouterEmbedRequest,
  RouterServiceService,
} from "@tokenmesh/proto/router/v1/router";
import {
  AppError,
  type CallContext,
  callStream,
  callUnary,
  createGrpcClient,
  GrpcServer,
  Lifecycle,
  parseEnv,
} from "@tokenmesh/runtime";
import { createLogger } from "@tokenmesh/telemetry";
import { type NatsServerHandle, startNatsServer, waitFor } from "@tokenmesh/testing";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createApp } from "../src/app.js";
import { GatewayConfigSchema } from "../src/config.js";
import { verifyCallbackSignature } from "../src/domain/job-callback.js";
import { jobRequestId } from "../src/domain/job-state.js";
import { routeStreamOf, scriptedChunk } from "./scripted-router.js";

const ADMIN_KEY = "test-admin-key-jobs-0123456789";
// biome-ignore lint/suspicious/noExplicitAny: JSON bodies of the API under test, read field by field.
type Json = Record<string, any>;
const CATALOG = `
models:
  - { id: test-model, engine: openai, base_url: "http://127.0.0.1:9/v1", upstream_model: test }
  - { id: test-embed, engine: openai, kind: embedding, base_url: "http://127.0.0.1:9/v1", upstream_model: e }
`;
const logger = createLogger({ service: "gateway-jobs-test", level: "silent" });

/** Every routed request, with whether its call was aborted. */
const routed: { req: RouteRequest; aborted: boolean }[] = [];
/** Calls of "HOLD" prompts wait here until released (or aborted). */
let releaseHeld: (() => void) | undefined;
const held = new Promise<void>((r) => {
  releaseHeld = r;
});

async function* route(req: RouteRequest, call: CallContext): AsyncGenerator<RouteResponse> {
  const entry = { req, aborted: false };
  routed.push(entry);
  call.signal.addEventListener("abort", () => {
    entry.aborted = true;
  });
  const last = req.request?.messages.at(-1)?.content ?? "";
  if (last.includes("HOLD")) {
    await Promise.race([held, new Promise((r) => call.signal.addEventListener("abort", r, { once: true }))]);
    if (call.signal.aborted) throw new AppError("CANCELLED", "gone");
  }
  const chunk = scriptedChunk;
  // fromPartial: fields other work adds to the router's messages get their defaults.
  yield RouteResponse.fromPartial({
    route: { model: "test-model", provider: "openai", cacheHit: false, attempts: 1 },
  });
  yield RouteResponse.fromPartial({ chunk: chunk(`echo: ${last}`) });
  yield RouteResponse.fromPartial({ chunk: chunk("", FinishReason.FINISH_REASON_STOP) });
  yield RouteResponse.fromPartial({
    chunk: {
      id: "chatcmpl-scripted",
      created: 1_700_000_000,
      model: "test-model",
      choices: [],
      usage: { inputTokens: 3, outputTokens: 2, cachedTokens: 0 },
    },
  });
}

function startRouter(): GrpcServer {
  const server = new GrpcServer({ logger });
  server.add(RouterServiceService, {
    route,
    routeStream: routeStreamOf(route),
    async embed(req: RouterEmbedRequest) {
      return {
        response: {
          model: "test-embed",
          data: req.request!.input.map((s: string, index: number) => ({ index, values: [s.length, 0.5, -1] })),
          usage: { inputTokens: req.request!.input.length, outputTokens: 0, cachedTokens: 0 },
        },
        model: "test-embed",
        provider: "openai",
      } as never;
    },
    async listModels() {
      return { models: [] };
    },
    // Methods other work adds to the router's contract are not scripted here.
    async getUpgrade() {
      throw new AppError("FAILED_PRECONDITION", "not scripted");
    },
  } as never);
  return server;
}

let dir: string;
let nats: NatsServerHandle;
let router: GrpcServer;
let app: ReturnType<typeof createApp>;
let nc: NatsConnection;
let base: string;
const usage: UsageRecorded[] = [];
const deadLetters: { subject: string; data: string }[] = [];
let keyA: string;
let keyB: string;

async function createKey(body: Record<string, unknown>): Promise<string> {
  const res = await fetch(`${base}/admin/keys`, {
    method: "POST",
    headers: { authorization: `Bearer ${ADMIN_KEY}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  expect(res.status).toBe(201);
  return ((await res.json()) as { key: string }).key;
}

async function api(key: string, method: string, path: string, body?: unknown) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Json) : {} };
}

const chatBody = (content: string) => ({ model: "test-model", messages: [{ role: "user", content }] });

function done(key: string, id: string): Promise<Json> {
  return waitFor(
    async () => {
      const r = await api(key, "GET", `/v1/jobs/${id}`);
      return ["succeeded", "failed", "cancelled"].includes(r.body.status) ? r.body : undefined;
    },
    { description: `job ${id} final` },
  );
}

/** A completion without what differs between two runs of one request (its id and creation time). */
function comparable(body: Json) {
  const { id: _id, created: _created, ...rest } = body;
  return rest;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "gateway-jobs-"));
  await writeFile(join(dir, "mesh.yaml"), CATALOG);
  // Its own NATS: the LLM_JOBS work queue's consumers are this test's gateway alone.
  nats = await startNatsServer();
  router = startRouter();
  const routerPort = await router.listen("127.0.0.1", 0);
  router.setServing(true);
  nc = await connectNats({ servers: nats.url, name: "gateway-jobs-observer", logger });
  void (async () => {
    for await (const m of nc.subscribe(Subjects.usageRecorded)) usage.push(decodeEvent(UsageRecordedEvent, m.data));
  })();
  void (async () => {
    for await (const m of nc.subscribe(`${Subjects.deadLetterPrefix}.>`)) {
      deadLetters.push({ subject: m.subject, data: m.string() });
    }
  })();
  const config = parseEnv(GatewayConfigSchema, {
    NATS_URL: nats.url,
    REDIS_URL: inject("redisUrl"),
    ROUTER_ADDR: `127.0.0.1:${routerPort}`,
    GUARD_ADDR: "127.0.0.1:9",
    COST_ADDR: "127.0.0.1:9",
    GATEWAY_HOST: "127.0.0.1",
    GATEWAY_HTTP_PORT: "0",
    GATEWAY_GRPC_PORT: "0",
    TOKENMESH_ADMIN_KEY: ADMIN_KEY,
    MESH_CONFIG: join(dir, "mesh.yaml"),
    LOG_LEVEL: "silent",
    GATEWAY_JOB_WORKERS: "1",
    GATEWAY_CALLBACK_MAX_ATTEMPTS: "3",
    GATEWAY_CALLBACK_BACKOFF_MS: "20",
    GATEWAY_JOB_BATCH_MAX: "4",
  });
  app = createApp(config, { logger, lifecycle: new Lifecycle({ logger, deadlineMs: 5_000 }) });
  await app.start();
  base = `http://127.0.0.1:${app.httpPort}`;
  keyA = await createKey({ name: "jobs-a", team: "ta" });
  keyB = await createKey({ name: "jobs-b", team: "tb" });
});

afterAll(async () => {
  releaseHeld?.();
  await app?.stop();
  await router?.shutdown(100);
  await nc?.drain();
  await nats?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("async jobs", () => {
  it("runs a chat job whose result is the sync endpoint's body, billed under the job's request id", async () => {
    const sync = await api(keyA, "POST", "/v1/chat/completions", chatBody("hello job"));
    expect(sync.status).toBe(200);
    const sub = await api(keyA, "POST", "/v1/jobs", {
      endpoint: "/v1/chat/completions",
      request: chatBody("hello job"),
      metadata: { batch: "nightly" },
    });
    expect(sub.status).toBe(202);
    expect(sub.body).toMatchObject({ status: "queued", object: "job", metadata: { batch: "nightly" } });
    expect(sub.body.id).toMatch(/^job_[0-9a-f]{24}$/);
    const job = await done(keyA, sub.body.id);
    expect(job.status).toBe("succeeded");
    expect(comparable(job.result)).toEqual(comparable(sync.body));
    const requestId = jobRequestId(sub.body.id, 1);
    expect(job.result.id).toBe(requestId);
    expect(job.created_at).toBeLessThanOrEqual(job.started_at);
    expect(job.started_at).toBeLessThanOrEqual(job.finished_at);
    // Through the router at batch priority, and one usage event under the derived id.
    expect(routed.find((r) => r.req.context?.requestId === requestId)?.req.context?.priority).toBe(-1);
    const ev = await waitFor(() => usage.find((u) => u.requestId === requestId));
    expect(ev).toMatchObject({ status: "ok", inputTokens: 3, outputTokens: 2, endpoint: "chat" });
  });

  it("runs an embeddings job in the requested encoding, as the sync endpoint would answer", async () => {
    const body = { model: "test-embed", input: ["abc", "de"], encoding_format: "base64" };
    const sync = await api(keyA, "POST", "/v1/embeddings", body);
    const sub = await api(keyA, "POST", "/v1/jobs", { endpoint: "/v1/embeddings", request: body });
    expect(sub.status).toBe(202);
    const job = await done(keyA, sub.body.id);
    expect(job.endpoint).toBe("/v1/embeddings");
    expect(job.result).toEqual(sync.body);
  });

  it("answers a batch with every answer in order", async () => {
    const sub = await api(keyA, "POST", "/v1/jobs/batch", {
      requests: [chatBody("one"), chatBody("two"), chatBody("three")],
    });
    expect(sub.status).toBe(202);
    expect(sub.body).toMatchObject({ object: "job.batch", request_count: 3 });
    const job = await done(keyA, sub.body.id);
    expect(job.result.object).toBe("list");
    expect(
      job.result.data.map((d: { index: number; response: { choices: { message: { content: string } }[] } }) => [
        d.index,
        d.response.choices[0]?.message.content,
      ]),
    ).toEqual([
      [0, "echo: one"],
      [1, "echo: two"],
      [2, "echo: three"],
    ]);
    const tooMany = await api(keyA, "POST", "/v1/jobs/batch", { requests: Array(5).fill(chatBody("x")) });
    expect(tooMany.status).toBe(400);
  });

  it("refuses a bad request, a streamed one, an unknown model and a metadata callback URL before queueing", async () => {
    expect((await api(keyA, "POST", "/v1/jobs", { request: { model: "test-model" } })).body.error.param).toBe(
      "request.messages",
    );
    expect((await api(keyA, "POST", "/v1/jobs", { request: { ...chatBody("x"), stream: true } })).status).toBe(400);
    expect((await api(keyA, "POST", "/v1/jobs", { request: { ...chatBody("x"), model: "nope" } })).status).toBe(404);
    const meta = await api(keyA, "POST", "/v1/jobs", {
      request: chatBody("x"),
      callback_url: "http://169.254.169.254/latest/meta-data",
    });
    expect(meta.status).toBe(400);
    expect(meta.body.error.code).toBe("invalid_callback_url");
    expect((await api(keyA, "POST", "/v1/jobs", { request: chatBody("x") })).status).toBe(202);
    expect((await api("tm-wrong", "POST", "/v1/jobs", { request: chatBody("x") })).status).toBe(401);
  });

  it("rate-limits submissions with the key's limits", async () => {
    const key = await createKey({ name: "jobs-rpm", rpm: 1 });
    expect((await api(key, "POST", "/v1/jobs", { request: chatBody("first") })).status).toBe(202);
    const second = await api(key, "POST", "/v1/jobs", { request: chatBody("second") });
    expect(second.status).toBe(429);
    expect(second.body.error.code).toBe("rate_limit_exceeded");
  });

  it("shows a job to its own key only: another key gets 404 on read, cancel and in its list", async () => {
    const sub = await api(keyA, "POST", "/v1/jobs", { request: chatBody("mine") });
    await done(keyA, sub.body.id);
    expect((await api(keyB, "GET", `/v1/jobs/${sub.body.id}`)).status).toBe(404);
    expect((await api(keyB, "DELETE", `/v1/jobs/${sub.body.id}`)).status).toBe(404);
    expect((await api(keyB, "GET", "/v1/jobs?limit=100")).body.data.map((j: { id: string }) => j.id)).not.toContain(
      sub.body.id,
    );
    const mine = await api(keyA, "GET", "/v1/jobs?limit=2");
    expect(mine.body.data[0].id).toBe(sub.body.id);
    expect(mine.body.data[0].result).toBeUndefined();
    expect(mine.body.has_more).toBe(true);
    const next = await api(keyA, "GET", `/v1/jobs?limit=2&after=${mine.body.last_id}`);
    expect(next.body.data.map((j: { id: string }) => j.id)).not.toContain(sub.body.id);
    expect((await api(keyA, "GET", "/v1/jobs/job_000000000000000000000000")).status).toBe(404);
  });

  it("cancels a queued job, which never runs, and a running one, which is aborted", async () => {
    // The one worker is busy with a held job; the next job waits in the queue.
    const running = await api(keyA, "POST", "/v1/jobs", { request: chatBody("HOLD running") });
    await waitFor(async () => (await api(keyA, "GET", `/v1/jobs/${running.body.id}`)).body.status === "running");
    const queued = await api(keyA, "POST", "/v1/jobs", { request: chatBody("queued then cancelled") });
    expect((await api(keyA, "GET", `/v1/jobs/${queued.body.id}`)).body.status).toBe("queued");
    const c1 = await api(keyA, "DELETE", `/v1/jobs/${queued.body.id}`);
    expect(c1.body.status).toBe("cancelled");

    const c2 = await api(keyA, "DELETE", `/v1/jobs/${running.body.id}`);
    expect(c2.body.status).toBe("cancelled");
    const heldCall = routed.find((r) => r.req.context?.requestId === jobRequestId(running.body.id, 1))!;
    await waitFor(() => heldCall.aborted, { description: "the running job's router call aborted" });
    // The worker moves on to the cancelled queued job and drops it: a later job runs, the cancelled one never did.
    const after = await api(keyA, "POST", "/v1/jobs", { request: chatBody("after the cancels") });
    expect((await done(keyA, after.body.id)).status).toBe("succeeded");
    expect(routed.some((r) => r.req.context?.requestId === jobRequestId(queued.body.id, 1))).toBe(false);
    expect((await api(keyA, "GET", `/v1/jobs/${running.body.id}`)).body.status).toBe("cancelled");
    // Cancelling a finished job changes nothing.
    expect((await api(keyA, "DELETE", `/v1/jobs/${after.body.id}`)).body.status).toBe("succeeded");
  });

  it("acknowledges a redelivered finished job without running it again", async () => {
    const sub = await api(keyA, "POST", "/v1/jobs", { request: chatBody("only once") });
    await done(keyA, sub.body.id);
    const calls = () => routed.filter((r) => r.req.context?.requestId === jobRequestId(sub.body.id, 1)).length;
    expect(calls()).toBe(1);
    // The same job delivered again (as after a worker died between storing the result and acking).
    const js = jetstream(nc);
    const duplicate = encodeEvent(JobSubmittedEvent, {
      jobId: sub.body.id,
      request: {
        model: "test-model",
        messages: [
          {
            role: Role.ROLE_USER,
            content: "only once",
            parts: [],
            name: "",
            toolCalls: [],
            toolCallId: "",
            refusal: "",
          },
        ],
        tools: [],
        stop: [],
        n: 1,
        user: "",
        stream: false,
        metadata: {},
      },
      callbackUrl: "",
      keyId: "ignored",
      endpoint: "chat",
      batch: false,
      chatBatch: [],
      embedBatch: [],
      encodingFormat: "",
      metadata: {},
      priority: 0,
    });
    await js.publish(Subjects.jobSubmitted, duplicate, { msgID: `${sub.body.id}:again` });
    const marker = await api(keyA, "POST", "/v1/jobs", { request: chatBody("marker") });
    await done(keyA, marker.body.id);
    await waitFor(async () => (await jsm()).num_pending === 0 && (await jsm()).num_ack_pending === 0, {
      description: "the queue drained",
    });
    expect(calls()).toBe(1);
  });
});

async function jsm() {
  return (await jetstreamManager(nc)).consumers.info("LLM_JOBS", "gateway-jobs");
}

describe("job callbacks", () => {
  let receiver: Server;
  let url: string;
  const received: { headers: Record<string, string | string[] | undefined>; body: string }[] = [];
  /** Answers for the next callbacks, in order (then 200). */
  const answers: number[] = [];

  beforeAll(async () => {
    receiver = createServer((req, res) => {
      let body = "";
      req.on("data", (c) => {
        body += c;
      });
      req.on("end", () => {
        received.push({ headers: req.headers, body });
        res.writeHead(answers.shift() ?? 200).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
    const addr = receiver.address();
    url = `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}/hook`;
  });
  afterAll(() => new Promise<void>((r) => receiver.close(() => r())));

  it("POSTs the final job signed with the key's secret, retried after a failure", async () => {
    const secret = (await api(keyA, "GET", "/v1/jobs/callback-secret")).body.secret as string;
    expect(secret).toMatch(/^whsec_/);
    expect((await api(keyA, "GET", "/v1/jobs/callback-secret")).body.secret).toBe(secret);
    answers.push(500);
    const sub = await api(keyA, "POST", "/v1/jobs", { request: chatBody("call me back"), callback_url: url });
    const mine = () => received.filter((r) => r.headers["x-tokenmesh-job-id"] === sub.body.id);
    await waitFor(() => mine().length >= 2, { description: "a retried callback" });
    const last = mine().at(-1)!;
    expect(last.headers["x-tokenmesh-delivery"]).toBe("2");
    const sig = String(last.headers["x-tokenmesh-signature"]);
    expect(sig).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
    expect(verifyCallbackSignature(secret, sig, last.body, Math.floor(Date.now() / 1000))).toBe(true);
    expect(verifyCallbackSignature(`${secret}x`, sig, last.body, Math.floor(Date.now() / 1000))).toBe(false);
    const posted = JSON.parse(last.body);
    expect(posted).toMatchObject({ id: sub.body.id, status: "succeeded" });
    expect(posted.result.choices[0].message.content).toBe("echo: call me back");
    await waitFor(async () => (await api(keyA, "GET", `/v1/jobs/${sub.body.id}`)).body.callback_status === "delivered");
    // Another key's secret is its own.
    expect((await api(keyB, "GET", "/v1/jobs/callback-secret")).body.secret).not.toBe(secret);
  });

  it("dead-letters a callback after its last try and says so on the job", async () => {
    answers.push(503, 503, 503);
    const sub = await api(keyA, "POST", "/v1/jobs", { request: chatBody("nobody home"), callback_url: url });
    const dl = await waitFor(
      () =>
        deadLetters.find(
          (d) => d.subject === `llm.deadletter.v1.${Subjects.jobCallback}` && d.data.includes(sub.body.id),
        ),
      { description: "the dead-lettered callback" },
    );
    expect(dl).toBeDefined();
    expect(received.filter((r) => r.headers["x-tokenmesh-job-id"] === sub.body.id)).toHaveLength(3);
    await waitFor(async () => (await api(keyA, "GET", `/v1/jobs/${sub.body.id}`)).body.callback_status === "failed");
  });
});

describe("jobs over gRPC", () => {
  it("submits, watches to the result, and hides another key's job", async () => {
    const grpc = createGrpcClient(GatewayServiceClient, `127.0.0.1:${app.host.grpcPort}`);
    const md = (key: string) => {
      const m = new Metadata();
      m.set("authorization", `Bearer ${key}`);
      return m;
    };
    try {
      const job = await callUnary(
        grpc.submitJob.bind(grpc),
        {
          chat: {
            model: "test-model",
            messages: [
              {
                role: Role.ROLE_USER,
                content: "via grpc",
                parts: [],
                name: "",
                toolCalls: [],
                toolCallId: "",
                refusal: "",
              },
            ],
            tools: [],
            stop: [],
            n: 1,
            user: "",
            stream: false,
            metadata: {},
          },
          callbackUrl: "",
          metadata: { via: "grpc" },
        },
        { metadata: md(keyA) },
      );
      expect(job.status).toBe(JobStatus.JOB_STATUS_QUEUED);
      const seen = [];
      for await (const j of callStream(grpc.watchJob.bind(grpc), { id: job.id }, { metadata: md(keyA) })) seen.push(j);
      const last = seen.at(-1)!;
      expect(last.status).toBe(JobStatus.JOB_STATUS_SUCCEEDED);
      expect(last.result?.chat?.choices[0]?.message?.content).toBe("echo: via grpc");
      expect(last.metadata).toEqual({ via: "grpc" });
      const other = await callUnary(grpc.getJob.bind(grpc), { id: job.id }, { metadata: md(keyB) }).catch((e) => e);
      expect((other as AppError).code).toBe("NOT_FOUND");
      const cancel = await callUnary(grpc.cancelJob.bind(grpc), { id: job.id }, { metadata: md(keyB) }).catch((e) => e);
      expect((cancel as AppError).code).toBe("NOT_FOUND");
    } finally {
      grpc.close();
    }
  });
});
