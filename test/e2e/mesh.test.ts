import { randomBytes } from "node:crypto";
import { request as httpRequest } from "node:http";
import { connect as tcpConnect } from "node:net";
import { Metadata } from "@grpc/grpc-js";
import { DeliverPolicy, jetstream } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { decodeEvent, GuardDecisionEvent, UsageRecordedEvent } from "@tokenmesh/events";
import { Role } from "@tokenmesh/proto/common/v1/chat";
import type { UsageRecorded } from "@tokenmesh/proto/events/v1/events";
import { GatewayServiceClient } from "@tokenmesh/proto/gateway/v1/gateway";
import { type AppError, callStream, callUnary, createGrpcClient } from "@tokenmesh/runtime";
import { waitFor } from "@tokenmesh/testing";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { ADMIN_KEY, createKey, type Mesh, startMesh } from "./mesh.js";

let mesh: Mesh;
let nc: NatsConnection;
let key: { id: string; key: string };
let client: OpenAI;
const usage = new Map<string, UsageRecorded>();

beforeAll(async () => {
  mesh = await startMesh({ natsUrl: inject("natsUrl"), redisUrl: inject("redisUrl") });
  nc = await connect({ servers: inject("natsUrl") });
  // Every usage event the mesh publishes, by request id (an ordered consumer from now on).
  const consumer = await jetstream(nc).consumers.get("LLM_USAGE", { deliver_policy: DeliverPolicy.New });
  void (async () => {
    for await (const m of await consumer.consume()) {
      // The stream also holds the router's reports (llm.usage.served.v2) of the same requests.
      if (m.subject !== UsageRecordedEvent.subject) continue;
      const e = decodeEvent(UsageRecordedEvent, m.data);
      usage.set(e.requestId, e);
    }
  })();
  key = await createKey(mesh.gateways[0]!.http, { name: "e2e", team: "team-e2e", user: "alice" });
  client = new OpenAI({ baseURL: `${mesh.gateways[0]!.http}/v1`, apiKey: key.key, maxRetries: 0 });
});

afterAll(async () => {
  await nc?.close();
  await mesh?.stop();
});

const user = (content: string) => ({ role: "user" as const, content });
const usageOf = (requestId: string) =>
  waitFor(() => usage.get(requestId), { timeoutMs: 10_000, description: `usage event ${requestId}` });

describe("the mesh through the official OpenAI client", () => {
  it("answers a chat completion from the local engine, and publishes matching usage", async () => {
    const { data, response } = await client.chat.completions
      .create({ model: "local-tiny", messages: [user("hello mesh")], max_tokens: 12, seed: 3 })
      .withResponse();
    expect(data.object).toBe("chat.completion");
    expect(data.choices[0]!.message.content!.length).toBeGreaterThan(0);
    expect(data.choices[0]!.finish_reason).toBe("length");
    expect(data.usage!.completion_tokens).toBe(12);
    const requestId = response.headers.get("x-request-id")!;
    expect(requestId).toBeTruthy();
    const e = await usageOf(requestId);
    expect(e).toMatchObject({
      keyId: key.id,
      team: "team-e2e",
      user: "alice",
      modelRequested: "local-tiny",
      model: "local-tiny",
      provider: "local",
      inputTokens: data.usage!.prompt_tokens,
      outputTokens: 12,
      status: "ok",
      stream: false,
    });
  });

  it("streams with a final usage chunk, resolving an alias", async () => {
    const stream = await client.chat.completions.create({
      model: "tiny",
      messages: [user("stream please")],
      max_tokens: 10,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let final: OpenAI.CompletionUsage | undefined | null;
    let finish: string | null = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
      if (chunk.usage) final = chunk.usage;
    }
    expect(text.length).toBeGreaterThan(0);
    expect(finish).toBe("length");
    expect(final?.completion_tokens).toBe(10);
  });

  it("passes tool calls through, streaming and not", async () => {
    const tools: OpenAI.ChatCompletionTool[] = [
      {
        type: "function",
        function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } },
      },
    ];
    const whole = await client.chat.completions.create({
      model: "gpt-fake",
      messages: [user("call the get_weather tool")],
      tools,
    });
    expect(whole.choices[0]!.finish_reason).toBe("tool_calls");
    const call = whole.choices[0]!.message.tool_calls![0]! as OpenAI.ChatCompletionMessageFunctionToolCall;
    expect(call.function).toEqual({ name: "get_weather", arguments: '{"city":"test"}' });

    const stream = await client.chat.completions.create({
      model: "gpt",
      messages: [user("call the get_weather tool")],
      tools,
      stream: true,
    });
    let args = "";
    let name = "";
    for await (const chunk of stream) {
      for (const t of chunk.choices[0]?.delta.tool_calls ?? []) {
        name ||= t.function?.name ?? "";
        args += t.function?.arguments ?? "";
      }
    }
    expect(name).toBe("get_weather");
    expect(args).toBe('{"city":"test"}');
  });

  it("embeds, locally and upstream", async () => {
    const local = await client.embeddings.create({ model: "local-embed", input: ["one", "two"] });
    expect(local.data).toHaveLength(2);
    expect(local.data[0]!.embedding.length).toBeGreaterThan(0);
    const upstream = await client.embeddings.create({ model: "embed-fake", input: "hello" });
    expect(upstream.data[0]!.embedding).toHaveLength(8);
  });

  it("lists models", async () => {
    const ids = (await client.models.list()).data.map((m) => m.id);
    expect(ids).toEqual(expect.arrayContaining(["local-tiny", "gpt-fake", "claude-fake", "local-embed"]));
  });

  it("falls back to the next model when the first keeps failing", async () => {
    const { data, response } = await client.chat.completions
      .create({ model: "flaky-with-fallback", messages: [user("fallback works")] })
      .withResponse();
    expect(data.choices[0]!.message.content).toBe("fallback works");
    const e = await usageOf(response.headers.get("x-request-id")!);
    expect(e.model).toBe("gpt-fake");
  });

  it("serves a repeated deterministic request from the router's cache, free of charge", async () => {
    const ask = () =>
      client.chat.completions
        .create({ model: "gpt-fake", messages: [user("cache this answer")], temperature: 0 })
        .withResponse();
    const first = await ask();
    const second = await ask();
    expect(second.data.choices[0]!.message.content).toBe(first.data.choices[0]!.message.content);
    expect(second.data.id).not.toBe(first.data.id);
    expect((await usageOf(first.response.headers.get("x-request-id")!)).cacheHit).toBe(false);
    expect((await usageOf(second.response.headers.get("x-request-id")!)).cacheHit).toBe(true);
  });

  it("redacts a secret in the output and blocks a configured pattern", async () => {
    const secret = `sk-proj-${randomBytes(24).toString("hex")}`;
    const r = await client.chat.completions.create({ model: "gpt-fake", messages: [user(`my key is ${secret}`)] });
    expect(r.choices[0]!.message.content).not.toContain(secret);
    expect(r.choices[0]!.message.content).toContain("[REDACTED");
    const blocked = await client.chat.completions
      .create({ model: "gpt-fake", messages: [user("connect to db.corp.internal now")] })
      .catch((e: InstanceType<typeof OpenAI.APIError>) => e);
    expect(blocked).toBeInstanceOf(OpenAI.BadRequestError);
    expect((blocked as InstanceType<typeof OpenAI.APIError>).code).toBe("content_policy_violation");
  });
});

describe("the guard's deep tier", () => {
  it("blocks a request its team's policy sends to the guard model, and publishes the decision", async () => {
    const guarded = await createKey(mesh.gateways[0]!.http, { name: "deep", team: "deep-team" });
    const c = new OpenAI({ baseURL: `${mesh.gateways[0]!.http}/v1`, apiKey: guarded.key, maxRetries: 0 });
    const err = await c.chat.completions
      .create({ model: "gpt-fake", messages: [user("something the guard model dislikes")] })
      .withResponse()
      .catch((e: InstanceType<typeof OpenAI.APIError>) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    const apiErr = err as InstanceType<typeof OpenAI.APIError>;
    expect(apiErr.code).toBe("content_policy_violation");
    expect(apiErr.message).toContain("deep.S1");
    const requestId = apiErr.headers?.get("x-request-id") ?? "";
    const consumer = await jetstream(nc).consumers.get("LLM_GUARD", { deliver_policy: DeliverPolicy.All });
    const decision = await waitFor(
      async () => {
        const batch = await consumer.fetch({ max_messages: 1000, expires: 1_000 });
        for await (const m of batch) {
          const d = decodeEvent(GuardDecisionEvent, m.data);
          if (d.requestId === requestId && d.tier === "deep") return d;
        }
        return undefined;
      },
      { timeoutMs: 10_000, description: "the deep tier's decision event" },
    );
    expect(decision).toMatchObject({ keyId: guarded.id, action: "block", stage: "input", mode: "block" });
    expect(decision.ruleIds).toContain("deep.S1");
    expect((await usageOf(requestId)).status).toBe("blocked");
    // A key without that policy never reaches the guard service.
    const plain = await client.chat.completions.create({ model: "gpt-fake", messages: [user("same words")] });
    expect(plain.choices[0]!.message.content).toBeTruthy();
  });
});

describe("errors in OpenAI's format", () => {
  const post = (body: string, headers: Record<string, string> = {}) =>
    fetch(`${mesh.gateways[0]!.http}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key.key}`, "content-type": "application/json", ...headers },
      body,
    });

  it("400 for malformed JSON and for invalid fields, naming the parameter", async () => {
    const bad = await post("{not json");
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { type: string } }).error.type).toBe("invalid_request_error");
    const err = await client.chat.completions
      .create({ model: "local-tiny", messages: [user("x")], temperature: 7 })
      .catch((e: InstanceType<typeof OpenAI.APIError>) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect((err as InstanceType<typeof OpenAI.APIError>).param).toBe("temperature");
  });

  it("401 for a missing or wrong key", async () => {
    const anon = new OpenAI({ baseURL: `${mesh.gateways[0]!.http}/v1`, apiKey: "tm-wrong", maxRetries: 0 });
    await expect(anon.chat.completions.create({ model: "local-tiny", messages: [user("x")] })).rejects.toBeInstanceOf(
      OpenAI.AuthenticationError,
    );
    const none = await post(JSON.stringify({ model: "local-tiny", messages: [user("x")] }), { authorization: "" });
    expect(none.status).toBe(401);
  });

  it("403 for a model the key may not use, 404 for an unknown model", async () => {
    const limited = await createKey(mesh.gateways[0]!.http, { name: "only-local", models: ["local-tiny"] });
    const c = new OpenAI({ baseURL: `${mesh.gateways[0]!.http}/v1`, apiKey: limited.key, maxRetries: 0 });
    await expect(c.chat.completions.create({ model: "gpt-fake", messages: [user("x")] })).rejects.toBeInstanceOf(
      OpenAI.PermissionDeniedError,
    );
    await expect(
      client.chat.completions.create({ model: "no-such-model", messages: [user("x")] }),
    ).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it("413 for a body over the limit, which the official client actually receives", async () => {
    const res = await post(JSON.stringify({ model: "local-tiny", messages: [user("x".repeat(5 * 1024 * 1024))] }));
    expect(res.status).toBe(413);
    // Eight times over the limit: the client is still sending when the gateway knows the answer.
    const err = await client.chat.completions
      .create({ model: "local-tiny", messages: [user("y".repeat(32 * 1024 * 1024))] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(413);
    expect((err as InstanceType<typeof OpenAI.APIError>).code).toBe("request_too_large");
  });

  it("accepts an empty body with a JSON content type where no body is expected", async () => {
    const k = await createKey(mesh.gateways[0]!.http, { name: "delete-me" });
    const del = await fetch(`${mesh.gateways[0]!.http}/admin/keys/${k.id}`, {
      method: "DELETE",
      headers: { authorization: `Bearer ${ADMIN_KEY}`, "content-type": "application/json" },
    });
    expect(del.status).toBe(200);
    const empty = await post("");
    expect(empty.status).toBe(400);
    expect(((await empty.json()) as { error: { message: string } }).error.message).toMatch(/JSON object/);
  });

  it("431 for giant headers, 408 for a client that never finishes its body", async () => {
    const giant = await post(JSON.stringify({ model: "local-tiny", messages: [user("x")] }), {
      "x-giant": "g".repeat(64 * 1024),
    });
    expect(giant.status).toBe(431);
    // Headers promise 100 bytes, 10 arrive, then nothing: the gateway gives up after its request timeout.
    const url = new URL(mesh.gateways[0]!.http);
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = tcpConnect({ host: url.hostname, port: Number(url.port) }, () => {
        socket.write(
          'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"model":',
        );
      });
      let text = "";
      socket.on("data", (d) => {
        text += d.toString();
      });
      socket.on("close", () => resolve(text));
      socket.on("error", reject);
    });
    expect(answer).toMatch(/^HTTP\/1\.1 408/);
  });

  it("429 with retry-after when a key's rate limit is reached", async () => {
    const limited = await createKey(mesh.gateways[0]!.http, { name: "rpm-1", rpm: 1 });
    const c = new OpenAI({ baseURL: `${mesh.gateways[0]!.http}/v1`, apiKey: limited.key, maxRetries: 0 });
    const ok = await c.chat.completions.create({ model: "gpt-fake", messages: [user("first")] }).withResponse();
    expect(ok.response.headers.get("x-ratelimit-limit-requests")).toBe("1");
    expect(ok.response.headers.get("x-ratelimit-remaining-requests")).toBe("0");
    const err = await c.chat.completions
      .create({ model: "gpt-fake", messages: [user("second")] })
      .catch((e: InstanceType<typeof OpenAI.APIError>) => e);
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    expect(Number((err as InstanceType<typeof OpenAI.APIError>).headers?.get("retry-after"))).toBeGreaterThan(0);
  });

  it("502 when the upstream fails, 503 when it cannot be reached", async () => {
    const failing = await client.chat.completions
      .create({ model: "broken-upstream", messages: [user("x")] })
      .catch((e: InstanceType<typeof OpenAI.APIError>) => e);
    expect((failing as InstanceType<typeof OpenAI.APIError>).status).toBe(502);
    const down = await client.chat.completions
      .create({ model: "down-upstream", messages: [user("x")] })
      .catch((e: InstanceType<typeof OpenAI.APIError>) => e);
    expect((down as InstanceType<typeof OpenAI.APIError>).status).toBe(503);
  });

  it("a revoked key stops working within a second", async () => {
    const k = await createKey(mesh.gateways[0]!.http, { name: "to-revoke" });
    const c = new OpenAI({ baseURL: `${mesh.gateways[0]!.http}/v1`, apiKey: k.key, maxRetries: 0 });
    await c.models.list();
    const del = await fetch(`${mesh.gateways[0]!.http}/admin/keys/${k.id}`, {
      method: "DELETE",
      headers: { authorization: `Bearer ${ADMIN_KEY}` },
    });
    expect(del.status).toBe(200);
    const revokedAt = Date.now();
    const refusal = await waitFor(
      () =>
        c.models.list().then(
          () => undefined,
          (e: unknown) => e,
        ),
      { timeoutMs: 1_500, intervalMs: 50, description: "the revoked key refused" },
    );
    expect(refusal).toBeInstanceOf(OpenAI.AuthenticationError);
    expect(Date.now() - revokedAt).toBeLessThanOrEqual(1_500);
  });
});

describe("request ids", () => {
  it("are minted by the gateway: one client id sent ten times gets ten slots, ten events and ten ledger entries", async () => {
    const gateway = mesh.gateways[0]!.http;
    const limited = await createKey(gateway, { name: "rpm-3-same-id", rpm: 3 });
    const seen: { status: number; id: string }[] = [];
    for (let i = 0; i < 10; i++) {
      const res = await fetch(`${gateway}/v1/chat/completions`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${limited.key}`,
          "content-type": "application/json",
          "x-request-id": "same-id-every-time",
        },
        body: JSON.stringify({ model: "gpt-fake", messages: [user(`request ${i}`)] }),
      });
      await res.text();
      expect(res.headers.get("x-client-request-id")).toBe("same-id-every-time");
      seen.push({ status: res.status, id: res.headers.get("x-request-id")! });
    }
    expect(seen.filter((r) => r.status === 200)).toHaveLength(3);
    expect(seen.filter((r) => r.status === 429)).toHaveLength(7);
    expect(new Set(seen.map((r) => r.id)).size).toBe(10);
    expect(seen.every((r) => r.id !== "same-id-every-time")).toBe(true);
    for (const r of seen) expect((await usageOf(r.id)).keyId).toBe(limited.id);
    const ledger = await waitFor(
      async () => {
        const res = await fetch(`${gateway}/admin/usage?keyId=${limited.id}&period=month`, {
          headers: { authorization: `Bearer ${ADMIN_KEY}` },
        });
        const body = (await res.json()) as { requests: number; errors: number };
        return body.requests === 10 ? body : undefined;
      },
      { timeoutMs: 10_000, description: "ten ledger entries" },
    );
    expect(ledger.errors).toBe(7);
  });
});

describe("Connection: close", () => {
  const exchange = (body: Record<string, unknown>) =>
    new Promise<{ headers: import("node:http").IncomingHttpHeaders; text: string; socketClosed: boolean }>(
      (resolve, reject) => {
        const url = new URL(`${mesh.gateways[0]!.http}/v1/chat/completions`);
        const req = httpRequest(
          {
            host: url.hostname,
            port: url.port,
            path: url.pathname,
            method: "POST",
            agent: false,
            headers: { authorization: `Bearer ${key.key}`, "content-type": "application/json", connection: "close" },
          },
          (res) => {
            let text = "";
            res.setEncoding("utf8");
            res.on("data", (d: string) => {
              text += d;
            });
            // The server closing the socket after the response is what `Connection: close` asks for.
            res.socket.once("close", () => resolve({ headers: res.headers, text, socketClosed: true }));
          },
        );
        req.on("error", reject);
        req.end(JSON.stringify(body));
      },
    );

  it("closes the connection after a streamed and after a whole response", async () => {
    const streamed = await exchange({ model: "gpt-fake", stream: true, messages: [user("bye")] });
    expect(streamed.text).toContain("data: [DONE]");
    expect(streamed.headers.connection).toBe("close");
    const whole = await exchange({ model: "gpt-fake", messages: [user("bye")] });
    expect(JSON.parse(whole.text).object).toBe("chat.completion");
    expect(whole.headers.connection).toBe("close");
  });
});

describe("gateway metrics", () => {
  it("count every response by status, refused ones included", async () => {
    const text = await (await fetch(`${mesh.gateways[0]!.http}/metrics`)).text();
    const count = (status: string) =>
      Number(
        new RegExp(`tokenmesh_gateway_requests_total\\{api="http",endpoint="chat",status="${status}"\\} (\\d+)`).exec(
          text,
        )?.[1] ?? 0,
      );
    expect(count("200")).toBeGreaterThan(0);
    expect(count("401")).toBeGreaterThan(0);
    expect(count("429")).toBeGreaterThan(0);
    expect(text).toMatch(/tokenmesh_gateway_rate_limited_total\{limit="requests"\} [1-9]/);
    expect(text).toMatch(/tokenmesh_gateway_request_duration_seconds_count\{api="http",endpoint="chat"\} [1-9]/);
  });
});

describe("the gRPC front door", () => {
  it("serves Chat, ChatStream, Embed and ListModels with the same errors", async () => {
    const grpc = createGrpcClient(GatewayServiceClient, mesh.gateways[0]!.grpc);
    const md = new Metadata();
    md.set("authorization", `Bearer ${key.key}`);
    const request = {
      model: "gpt-fake",
      messages: [
        {
          role: Role.ROLE_USER,
          content: "hello grpc",
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
    };
    try {
      const res = await callUnary(grpc.chat.bind(grpc), request, { metadata: md });
      expect(res.choices[0]!.message!.content).toBe("hello grpc");
      expect(res.usage!.outputTokens).toBeGreaterThan(0);
      let text = "";
      for await (const chunk of callStream(grpc.chatStream.bind(grpc), request, { metadata: md })) {
        text += chunk.choices.map((c) => c.content).join("");
      }
      expect(text).toBe("hello grpc");
      // Why the router chose the model, as response metadata (the HTTP API's x-tokenmesh-route-reason header).
      const reasonOf = (call: { on(e: "metadata", f: (m: Metadata) => void): unknown }) =>
        new Promise<unknown>((resolve) => call.on("metadata", (m) => resolve(m.get("x-tokenmesh-route-reason")[0])));
      const unaryReason = reasonOf(grpc.chat(request, md, () => undefined));
      const stream = grpc.chatStream(request, md);
      const streamReason = reasonOf(stream);
      stream.on("data", () => undefined);
      expect(await unaryReason).toBe("model:gpt-fake");
      expect(await streamReason).toBe("model:gpt-fake");
      const emb = await callUnary(
        grpc.embed.bind(grpc),
        { model: "local-embed", input: ["x"], user: "" },
        { metadata: md },
      );
      expect(emb.data).toHaveLength(1);
      const models = await callUnary(grpc.listModels.bind(grpc), {}, { metadata: md });
      expect(models.models.map((m) => m.id)).toContain("local-tiny");
      const anon = await callUnary(grpc.chat.bind(grpc), request).catch((e: AppError) => e);
      expect((anon as AppError).code).toBe("UNAUTHENTICATED");
      const unknown = await callUnary(grpc.chat.bind(grpc), { ...request, model: "nope" }, { metadata: md }).catch(
        (e: AppError) => e,
      );
      expect((unknown as AppError).code).toBe("NOT_FOUND");
    } finally {
      grpc.close();
    }
  });
});

describe("one trace", () => {
  /** Sends a chat request under a trace id of our own and returns it with the response. */
  const traced = async (model: string) => {
    const traceId = randomBytes(16).toString("hex");
    const res = await fetch(`${mesh.gateways[0]!.http}/v1/chat/completions`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${key.key}`,
        "content-type": "application/json",
        traceparent: `00-${traceId}-${randomBytes(8).toString("hex")}-01`,
      },
      body: JSON.stringify({ model, messages: [user("trace me")], max_tokens: 8 }),
    });
    expect(res.status).toBe(200);
    return { traceId, res };
  };
  /** The trace's internal gRPC calls (client spans), once the spans of `services` have all arrived. */
  const grpcCalls = async (traceId: string, services: string[]) => {
    await waitFor(
      () => {
        const s = new Set(mesh.otlp.spans.filter((sp) => sp.traceId === traceId).map((sp) => sp.service));
        return services.every((x) => s.has(x));
      },
      { timeoutMs: 15_000, description: `spans from ${services.join(", ")}` },
    );
    const spans = mesh.otlp.spans.filter((sp) => sp.traceId === traceId);
    return {
      services: new Set(spans.map((sp) => sp.service)),
      calls: spans.filter((sp) => sp.kind === 3 && sp.attributes["rpc.system"] === "grpc").map((sp) => sp.name),
      spans,
    };
  };

  it("crosses one internal hop for a remote model (gateway → router → provider), and reaches the usage event", async () => {
    const { traceId, res } = await traced("gpt-fake");
    const { services, calls, spans } = await grpcCalls(traceId, ["tokenmesh-gateway", "tokenmesh-router"]);
    expect(calls).toEqual(["tokenmesh.router.v1.RouterService/Route"]);
    expect(services.has("tokenmesh-guard")).toBe(false);
    expect(services.has("tokenmesh-inference")).toBe(false);
    const modelSpan = spans.find((s) => s.name === "chat gpt-fake");
    expect(modelSpan?.service).toBe("tokenmesh-router");
    expect(modelSpan?.attributes).toMatchObject({
      "gen_ai.operation.name": "chat",
      "gen_ai.request.model": "gpt-fake",
      "gen_ai.provider.name": "openai",
    });
    expect(modelSpan?.attributes["gen_ai.usage.output_tokens"]).toBeGreaterThan(0);
    const e = await usageOf(res.headers.get("x-request-id")!);
    expect(e.traceId).toBe(traceId);
    // That call travelled on a stream it shares with the gateway's other calls (RouteStream), not one of its own.
    const metrics = await (await fetch(`${mesh.gateways[0]!.http}/metrics`)).text();
    const streams = metrics.match(/^tokenmesh_rpc_client_shared_streams\{[^}]*method="Route"[^}]*\} (\d+)/m);
    expect(Number(streams?.[1])).toBeGreaterThan(0);
    expect(metrics).not.toMatch(/^tokenmesh_rpc_client_unshared_calls_total\{[^}]*\} [1-9]/m);
  });

  it("crosses two for a local model (gateway → router → inference)", async () => {
    const { traceId } = await traced("local-tiny");
    const { calls } = await grpcCalls(traceId, ["tokenmesh-gateway", "tokenmesh-router", "tokenmesh-inference"]);
    expect(calls.sort()).toEqual([
      "tokenmesh.inference.v1.InferenceService/Generate",
      "tokenmesh.router.v1.RouterService/Route",
    ]);
    // The router's call travelled on a stream it shares with its other local calls (GenerateStream).
    const metrics = await (await fetch(`${mesh.ops.get("router")}/metrics`)).text();
    const streams = metrics.match(/^tokenmesh_rpc_client_shared_streams\{[^}]*method="Generate"[^}]*\} (\d+)/m);
    expect(Number(streams?.[1])).toBeGreaterThan(0);
    expect(metrics).not.toMatch(/^tokenmesh_rpc_client_unshared_calls_total\{[^}]*method="Generate"[^}]*\} [1-9]/m);
  });
});
