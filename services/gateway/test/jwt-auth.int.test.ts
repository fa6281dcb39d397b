import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Metadata } from "@grpc/grpc-js";
import { connectNats, decodeEvent, type NatsConnection, Subjects, UsageRecordedEvent } from "@tokenmesh/events";
import { FinishReason, Role } from "@tokenmesh/proto/common/v1/chat";
import type { UsageRecorded } from "@tokenmesh/proto/events/v1/events";
import { GatewayServiceClient } from "@tokenmesh/proto/gateway/v1/gateway";
import { RouteInfo, type RouteRequest } from "@tokenmesh/proto/router/v1/router";
import { callUnary, createGrpcClient, type GrpcServer, Lifecycle, parseEnv } from "@tokenmesh/runtime";
import { createLogger } from "@tokenmesh/telemetry";
import { waitFor } from "@tokenmesh/testing";
import { type CryptoKey, exportJWK, generateKeyPair, type JWK, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createApp } from "../src/app.js";
import { GatewayConfigSchema } from "../src/config.js";
import { scriptedChunk, scriptedRouter } from "./scripted-router.js";

const ADMIN_KEY = "test-admin-key-jwt-0123456789";
const ISSUER = "https://idp.test/";
const logger = createLogger({ service: "gateway-jwt-test", level: "silent" });

function catalog(audience: string): string {
  return `
models:
  - { id: test-model, engine: openai, base_url: "http://127.0.0.1:9/v1", upstream_model: test, aliases: [tm] }
  - { id: other-model, engine: openai, base_url: "http://127.0.0.1:9/v1", upstream_model: other }
auth:
  jwt:
    issuer: "${ISSUER}"
    audience: ${audience}
    jwks_url: "${jwksUrl}"
    clock_skew_s: 5
    # Long enough that the refetch budget is spent once in this file: rotation gets it, the bogus kids after do not.
    jwks_refetch_interval_s: 3600
    claims: { team: org, user: email, models: tm_models, tier: tm_tier }
    tiers:
      limited: { rpm: 1 }
`;
}

/** A local IdP: serves whatever keys the test publishes, counts fetches, and can go down. */
const idp = { keys: [] as JWK[], fetches: 0, down: false };
let jwksServer: Server;
let jwksUrl: string;
const routed: RouteRequest[] = [];
const usage: UsageRecorded[] = [];
let dir: string;
let router: GrpcServer;
let app: ReturnType<typeof createApp>;
let nc: NatsConnection;
let base: string;
let k1: { privateKey: CryptoKey; publicKey: CryptoKey };
let k2: { privateKey: CryptoKey; publicKey: CryptoKey };
let stranger: { privateKey: CryptoKey; publicKey: CryptoKey };

async function publish(kid: string, key: CryptoKey, alg: string): Promise<JWK> {
  return { ...(await exportJWK(key)), kid, alg, use: "sig" };
}

interface TokenOptions {
  kid?: string;
  key?: CryptoKey;
  alg?: string;
  claims?: Record<string, unknown>;
  iss?: string;
  aud?: string;
  exp?: number | null;
  nbf?: number;
  sub?: string;
}

const now = () => Math.floor(Date.now() / 1000);

async function token(o: TokenOptions = {}): Promise<string> {
  const jwt = new SignJWT({ org: "research", email: "ada@example.com", ...o.claims })
    .setProtectedHeader({ alg: o.alg ?? "RS256", kid: o.kid ?? "k1" })
    .setIssuer(o.iss ?? ISSUER)
    .setAudience(o.aud ?? "tokenmesh")
    .setSubject(o.sub ?? "user-1")
    .setIssuedAt();
  if (o.exp !== null) jwt.setExpirationTime(o.exp ?? now() + 300);
  if (o.nbf !== undefined) jwt.setNotBefore(o.nbf);
  return jwt.sign(o.key ?? k1.privateKey);
}

function startRouter(): GrpcServer {
  return scriptedRouter(logger, async function* (req) {
    routed.push(req);
    const chunk = scriptedChunk;
    yield { route: RouteInfo.fromPartial({ model: "test-model", provider: "openai", attempts: 1 }) };
    yield { chunk: chunk("hello") };
    yield { chunk: chunk("", FinishReason.FINISH_REASON_STOP) };
    yield {
      chunk: {
        id: "chatcmpl-scripted",
        created: 1,
        model: "test-model",
        choices: [],
        usage: { inputTokens: 3, outputTokens: 1, cachedTokens: 0 },
      },
    };
  });
}

beforeAll(async () => {
  k1 = await generateKeyPair("RS256", { extractable: true });
  k2 = await generateKeyPair("ES256", { extractable: true });
  stranger = await generateKeyPair("RS256", { extractable: true });
  idp.keys = [await publish("k1", k1.publicKey, "RS256")];
  jwksServer = createServer((_req, res) => {
    idp.fetches++;
    if (idp.down) {
      res.writeHead(503).end();
      return;
    }
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys: idp.keys }));
  });
  await new Promise<void>((resolve) => jwksServer.listen(0, "127.0.0.1", resolve));
  const addr = jwksServer.address();
  jwksUrl = `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}/jwks.json`;

  dir = await mkdtemp(join(tmpdir(), "gateway-jwt-"));
  await writeFile(join(dir, "mesh.yaml"), catalog("tokenmesh"));
  router = startRouter();
  const routerPort = await router.listen("127.0.0.1", 0);
  router.setServing(true);
  const natsUrl = inject("natsUrl");
  nc = await connectNats({ servers: natsUrl, name: "gateway-jwt-observer", logger });
  const sub = nc.subscribe(Subjects.usageRecorded);
  void (async () => {
    for await (const msg of sub) usage.push(decodeEvent(UsageRecordedEvent, msg.data));
  })();
  const config = parseEnv(GatewayConfigSchema, {
    NATS_URL: natsUrl,
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
  });
  app = createApp(config, { logger, lifecycle: new Lifecycle({ logger, deadlineMs: 5_000 }) });
  await app.start();
  base = `http://127.0.0.1:${app.httpPort}`;
});

afterAll(async () => {
  await app?.stop();
  await router?.shutdown(100);
  await nc?.drain();
  await new Promise((resolve) => jwksServer?.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

async function chat(bearer: string, body: Record<string, unknown> = {}) {
  const res = await fetch(`${base}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json" },
    body: JSON.stringify({ model: "test-model", messages: [{ role: "user", content: "hi" }], ...body }),
  });
  return {
    status: res.status,
    requestId: res.headers.get("x-request-id") ?? "",
    body: (await res.json()) as { error?: { message: string; type: string; code: string } },
  };
}

describe("JWT bearer tokens", () => {
  it("accepts a valid token with team and user from its claims, whatever the body says", async () => {
    const res = await chat(await token(), { user: "mallory" });
    expect(res.status).toBe(200);
    expect(idp.fetches).toBe(1);
    const ctx = routed.at(-1)?.context;
    expect(ctx).toMatchObject({ keyId: `jwt:${ISSUER}#user-1`, team: "research", user: "ada@example.com" });
    const event = await waitFor(() => usage.find((u) => u.requestId === res.requestId));
    expect(event).toMatchObject({
      keyId: `jwt:${ISSUER}#user-1`,
      team: "research",
      user: "ada@example.com",
      status: "ok",
    });
  });

  it("serves the gRPC front door with the same token", async () => {
    const grpc = createGrpcClient(GatewayServiceClient, `127.0.0.1:${app.host.grpcPort}`);
    const md = new Metadata();
    md.set("authorization", `Bearer ${await token({ sub: "grpc-user" })}`);
    const res = await callUnary(
      grpc.chat.bind(grpc),
      {
        model: "test-model",
        messages: [
          { role: Role.ROLE_USER, content: "hi", parts: [], name: "", toolCalls: [], toolCallId: "", refusal: "" },
        ],
        tools: [],
        stop: [],
        n: 1,
        user: "",
        stream: false,
        metadata: {},
      },
      { metadata: md, deadlineMs: 5_000 },
    );
    expect(res.choices[0]?.message?.content).toBe("hello");
    expect(routed.at(-1)?.context?.keyId).toBe(`jwt:${ISSUER}#grpc-user`);
    const bad = new Metadata();
    bad.set("authorization", `Bearer ${await token({ aud: "elsewhere" })}`);
    await expect(callUnary(grpc.listModels.bind(grpc), {}, { metadata: bad, deadlineMs: 5_000 })).rejects.toMatchObject(
      { code: "UNAUTHENTICATED" },
    );
    grpc.close();
  });

  it("applies the claimed tier's rate limit per subject", async () => {
    const limited = { tm_tier: "limited" };
    expect((await chat(await token({ sub: "rl-1", claims: limited }))).status).toBe(200);
    const second = await chat(await token({ sub: "rl-1", claims: limited }));
    expect(second.status).toBe(429);
    expect(second.body.error?.code).toBe("rate_limit_exceeded");
    // Another subject of the same team has its own window.
    expect((await chat(await token({ sub: "rl-2", claims: limited }))).status).toBe(200);
  });

  it("limits the models to the token's models claim", async () => {
    const t = await token({ sub: "m-1", claims: { tm_models: ["test-model"] } });
    expect((await chat(t)).status).toBe(200);
    const res = await chat(t, { model: "other-model" });
    expect(res.status).toBe(403);
    expect(res.body.error?.code).toBe("model_not_allowed");
  });

  it("accepts a token expired within the clock skew", async () => {
    expect((await chat(await token({ exp: now() - 2 }))).status).toBe(200);
  });

  it("fetches a rotated key once, for concurrent tokens with its new kid", async () => {
    idp.keys = [...idp.keys, await publish("k2", k2.publicKey, "ES256")];
    const before = idp.fetches;
    const t = await token({ kid: "k2", alg: "ES256", key: k2.privateKey });
    const results = await Promise.all(Array.from({ length: 5 }, () => chat(t)));
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    expect(idp.fetches).toBe(before + 1);
  });

  it("refuses invalid tokens with 401 in OpenAI's error format", async () => {
    const header = (h: object) => Buffer.from(JSON.stringify(h)).toString("base64url");
    const payload = header({ iss: ISSUER, aud: "tokenmesh", sub: "x", org: "research", exp: now() + 300 });
    const signedWithPem = await new SignJWT({ org: "research" })
      .setProtectedHeader({ alg: "HS256", kid: "k1" })
      .setIssuer(ISSUER)
      .setAudience("tokenmesh")
      .setSubject("x")
      .setExpirationTime("5m")
      .sign(new TextEncoder().encode(JSON.stringify(idp.keys[0])));
    const good = await token();
    const cases: [string, string, RegExp][] = [
      ["expired", await token({ exp: now() - 60 }), /expired/],
      ["not yet valid", await token({ nbf: now() + 60 }), /not valid yet/],
      ["wrong audience", await token({ aud: "someone-else" }), /audience/],
      ["wrong issuer", await token({ iss: "https://evil.test/" }), /issuer/],
      ["bad signature", await token({ key: stranger.privateKey }), /signature/],
      ["tampered payload", `${good.split(".")[0]}.${payload}.${good.split(".")[2]}`, /signature/],
      ["alg none", `${header({ alg: "none", kid: "k1" })}.${payload}.`, /algorithm/],
      ["HS256 keyed with the public key", signedWithPem, /algorithm/],
      ["unknown kid", await token({ kid: "k-unknown" }), /kid/],
      ["no exp", await token({ exp: null }), /exp/],
      ["no team claim", await token({ claims: { org: undefined } }), /org/],
      ["unknown tier", await token({ claims: { tm_tier: "platinum" } }), /tier/],
    ];
    for (const [what, bearer, message] of cases) {
      const res = await chat(bearer);
      expect({ what, status: res.status }).toEqual({ what, status: 401 });
      expect(res.body.error).toMatchObject({ type: "authentication_error", code: "invalid_api_key" });
      expect(res.body.error?.message).toMatch(message);
    }
  });

  it("does not refetch the JWKS for a flood of made-up kids", async () => {
    const before = idp.fetches;
    const tokens = await Promise.all(Array.from({ length: 20 }, (_, i) => token({ kid: `bogus-${i}` })));
    const results = await Promise.all(tokens.map((t) => chat(t)));
    expect(new Set(results.map((r) => r.status))).toEqual(new Set([401]));
    expect(idp.fetches).toBe(before);
  });

  it("keeps accepting tokens signed with cached keys while the IdP is down", async () => {
    idp.down = true;
    try {
      expect((await chat(await token())).status).toBe(200);
      expect((await chat(await token({ kid: "k2", alg: "ES256", key: k2.privateKey }))).status).toBe(200);
    } finally {
      idp.down = false;
    }
  });

  it("keeps virtual keys working beside JWTs", async () => {
    const res = await fetch(`${base}/admin/keys`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN_KEY}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "jwt-test-key", team: "research" }),
    });
    const { key, id } = (await res.json()) as { key: string; id: string };
    const ok = await chat(key);
    expect(ok.status).toBe(200);
    expect(routed.at(-1)?.context?.keyId).toBe(id);
  });

  it("follows a catalog reload (a new audience)", async () => {
    await writeFile(join(dir, "mesh.yaml"), catalog("[tokenmesh-v2]"));
    const t = await token({ aud: "tokenmesh-v2" });
    await waitFor(async () => (await chat(t)).status === 200, { description: "the new audience accepted" });
    expect((await chat(await token())).status).toBe(401);
  });
});
