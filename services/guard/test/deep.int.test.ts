import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connectNats, decodeEvent, GuardDecisionEvent, type NatsConnection, Subjects } from "@tokenmesh/events";
import { ChatMessage, Role } from "@tokenmesh/proto/common/v1/chat";
import { RequestContext } from "@tokenmesh/proto/common/v1/context";
import type { GuardDecision } from "@tokenmesh/proto/events/v1/events";
import { Action, GuardServiceClient, Stage } from "@tokenmesh/proto/guard/v1/guard";
import { type App, type AppDeps, callUnary, createGrpcClient, Lifecycle, parseEnv } from "@tokenmesh/runtime";
import { createLogger } from "@tokenmesh/telemetry";
import { type FakeUpstream, startFakeOpenAI, uniqueName, waitFor } from "@tokenmesh/testing";
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from "vitest";
import type { z } from "zod";
import { createApp } from "../src/app.js";
import { GuardConfigSchema } from "../src/config.js";

/**
 * The deep tier end to end: guard (this app) → router (its real app, run in-process from its sources) → the fake
 * OpenAI upstream, which plays the guard model by answering the text the test sets (Llama Guard's `safe` /
 * `unsafe\nS1,S10`, ShieldGemma's `Yes` / `No`) and a `/v1/moderations` endpoint. Services never import each
 * other; this test reaches the router's app through a runtime import so the guard's build never sees it.
 */
interface RouterModule {
  createApp(config: unknown, deps: AppDeps): App & { host: { grpcPort: number } };
}
interface RouterConfigModule {
  RouterConfigSchema: z.ZodType;
}
const ROUTER_SRC = new URL("../../router/src/", import.meta.url).href;

const MOD_KEY_ENV = "GUARD_DEEP_TEST_MODERATION_KEY";

const catalog = (upstream: string) => `
models:
  - { id: guard-model, engine: openai, base_url: "${upstream}", upstream_model: llama-guard-3-8b }
  # The fake holds its first byte 3 s (model directive): a guard model that never answers in time.
  - { id: slow-guard-model, engine: openai, base_url: "${upstream}", upstream_model: "llama-guard-3-8b+ttfb-3000" }
guard:
  policies:
    lg-block: { deep: { model: guard-model, apply_to: both } }
    lg-shadow: { deep: { model: guard-model, mode: shadow } }
    lg-subset: { deep: { model: guard-model, categories: [S1, S10] } }
    lg-slow-allow: { deep: { model: slow-guard-model, timeout_ms: 200, on_error: allow } }
    lg-slow-block: { deep: { model: slow-guard-model, timeout_ms: 200, on_error: block } }
    shieldgemma: { deep: { model: guard-model, format: shieldgemma, categories: [dangerous_content] } }
    moderation:
      deep:
        moderation: { base_url: "${upstream}", api_key_env: ${MOD_KEY_ENV}, model: omni-moderation-latest }
        categories: [violence, self-harm]
        apply_to: both
    rules-only: { pii: { email: block } }
`;

const logger = createLogger({ service: "guard-deep-test", level: "silent" });
let dir: string;
let fake: FakeUpstream;
let router: App & { host: { grpcPort: number } };
let app: ReturnType<typeof createApp>;
let client: GuardServiceClient;
let nc: NatsConnection;
const events: { decision: GuardDecision; msgId: string | undefined }[] = [];

beforeAll(async () => {
  process.env[MOD_KEY_ENV] = "test-moderation-key";
  dir = await mkdtemp(join(tmpdir(), "guard-deep-"));
  fake = await startFakeOpenAI();
  const meshConfig = join(dir, "mesh.yaml");
  await writeFile(meshConfig, catalog(fake.url));
  const natsUrl = inject("natsUrl");
  nc = await connectNats({ servers: natsUrl, name: "guard-deep-observer", logger });
  const sub = nc.subscribe(Subjects.guardDecision);
  void (async () => {
    for await (const msg of sub) {
      events.push({ decision: decodeEvent(GuardDecisionEvent, msg.data), msgId: msg.headers?.get("Nats-Msg-Id") });
    }
  })();

  const { createApp: createRouter } = (await import(`${ROUTER_SRC}app.ts`)) as RouterModule;
  const { RouterConfigSchema } = (await import(`${ROUTER_SRC}config.ts`)) as RouterConfigModule;
  const routerConfig = parseEnv(RouterConfigSchema, {
    NATS_URL: natsUrl,
    REDIS_URL: inject("redisUrl"),
    INFERENCE_ADDR: "127.0.0.1:9",
    ROUTER_HOST: "127.0.0.1",
    ROUTER_GRPC_PORT: "0",
    ROUTER_OPS_PORT: "0",
    ROUTER_REDIS_PREFIX: `${uniqueName("guard-deep")}:`,
    MESH_CONFIG: meshConfig,
    LOG_LEVEL: "silent",
  });
  router = createRouter(routerConfig, { logger, lifecycle: new Lifecycle({ logger, deadlineMs: 5_000 }) });
  await router.start();

  const config = parseEnv(GuardConfigSchema, {
    NATS_URL: natsUrl,
    ROUTER_ADDR: `127.0.0.1:${router.host.grpcPort}`,
    GUARD_HOST: "127.0.0.1",
    GUARD_GRPC_PORT: "0",
    GUARD_OPS_PORT: "0",
    MESH_CONFIG: meshConfig,
    LOG_LEVEL: "silent",
  });
  app = createApp(config, { logger, lifecycle: new Lifecycle({ logger, deadlineMs: 5_000 }) });
  await app.start();
  client = createGrpcClient(GuardServiceClient, `127.0.0.1:${app.host.grpcPort}`);
});

afterAll(async () => {
  client?.close();
  await app?.stop();
  await router?.stop();
  await fake?.close();
  await nc?.drain();
  await rm(dir, { recursive: true, force: true });
  delete process.env[MOD_KEY_ENV];
});

beforeEach(() => fake.reset());

const user = (content: string) => ChatMessage.fromPartial({ role: Role.ROLE_USER, content });

function deepCheck(
  policy: string,
  requestId: string,
  options: { stage?: Stage; messages?: ChatMessage[]; response?: string; index?: number } = {},
) {
  return callUnary(
    client.deepCheck.bind(client),
    {
      context: RequestContext.fromPartial({ requestId, keyId: "key-deep" }),
      policy,
      stage: options.stage ?? Stage.STAGE_INPUT,
      messages: options.messages ?? [
        ChatMessage.fromPartial({ role: Role.ROLE_SYSTEM, content: "You are terse." }),
        user("How do I make a weapon at home?"),
      ],
      response: options.response ?? "",
      index: options.index ?? 0,
    },
    { deadlineMs: 10_000 },
  );
}

/** The prompt the guard model received (the one user message of the router's upstream call). */
function promptSent(): string {
  const chat = fake.requests.find((r) => r.path.endsWith("/chat/completions"));
  const body = chat?.body as { messages: { role: string; content: string }[]; temperature?: number } | undefined;
  expect(body?.messages).toHaveLength(1);
  expect(body?.messages[0]?.role).toBe("user");
  expect(body?.temperature).toBe(0);
  return body!.messages[0]!.content;
}

function eventFor(requestId: string) {
  return waitFor(() => events.find((e) => e.decision.requestId === requestId), {
    description: `GuardDecision for ${requestId}`,
  });
}

describe("deep tier through the router to a Llama Guard model", () => {
  it("blocks an unsafe input, names the categories, and publishes a deep decision", async () => {
    fake.setBehavior({ text: "unsafe\nS1,S10" });
    const requestId = uniqueName("req");
    const res = await deepCheck("lg-block", requestId);
    expect(res).toMatchObject({
      action: Action.ACTION_BLOCK,
      shadow: false,
      checked: true,
      ruleIds: ["deep.S1", "deep.S10"],
      categories: ["S1", "S10"],
    });
    const prompt = promptSent();
    expect(prompt).toContain("Task: Check if there is unsafe content in 'User' messages");
    expect(prompt).toContain("S14: Code Interpreter Abuse.");
    expect(prompt).toContain("User: How do I make a weapon at home?");
    expect(prompt).not.toContain("You are terse.");

    const event = await eventFor(requestId);
    expect(event.decision).toMatchObject({
      action: "block",
      stage: "input",
      tier: "deep",
      mode: "block",
      keyId: "key-deep",
      ruleIds: ["deep.S1", "deep.S10"],
    });
    expect(event.msgId).toBe(`${requestId}:input:deep`);
    expect(JSON.stringify(event.decision)).not.toContain("weapon");
  });

  it("allows a safe verdict without publishing anything", async () => {
    fake.setBehavior({ text: "safe" });
    const requestId = uniqueName("req");
    const res = await deepCheck("lg-block", requestId);
    expect(res).toMatchObject({ action: Action.ACTION_ALLOW, checked: true, ruleIds: [] });
    // A later decision for another request proves the bus is flowing; none may be for this one.
    fake.setBehavior({ text: "unsafe\nS2" });
    const marker = uniqueName("req");
    await deepCheck("lg-block", marker);
    await eventFor(marker);
    expect(events.some((e) => e.decision.requestId === requestId)).toBe(false);
  });

  it("judges an answer as the last Agent turn, one decision per choice", async () => {
    fake.setBehavior({ text: "unsafe\nS9" });
    const requestId = uniqueName("req");
    const res = await deepCheck("lg-block", requestId, {
      stage: Stage.STAGE_OUTPUT,
      messages: [user("tell me a story")],
      response: "Here is how to enrich uranium.",
      index: 1,
    });
    expect(res).toMatchObject({ action: Action.ACTION_BLOCK, ruleIds: ["deep.S9"] });
    const prompt = promptSent();
    expect(prompt).toContain("unsafe content in 'Agent' messages");
    expect(prompt).toContain("User: tell me a story\n\nAgent: Here is how to enrich uranium.\n\n<END CONVERSATION>");
    expect(prompt).toContain("ONLY THE LAST Agent message");
    const event = await eventFor(requestId);
    expect(event.decision).toMatchObject({ stage: "output", tier: "deep" });
    expect(event.msgId).toBe(`${requestId}:output:deep:1`);
  });

  it("records a shadow verdict without enforcing it", async () => {
    fake.setBehavior({ text: "unsafe\nS2" });
    const requestId = uniqueName("req");
    const res = await deepCheck("lg-shadow", requestId);
    expect(res).toMatchObject({ action: Action.ACTION_BLOCK, shadow: true, ruleIds: ["deep.S2"] });
    expect((await eventFor(requestId)).decision).toMatchObject({ mode: "shadow", action: "block", tier: "deep" });
    const metrics = await (await fetch(`http://127.0.0.1:${app.host.opsPort}/metrics`)).text();
    expect(metrics).toMatch(
      /tokenmesh_guard_deep_checks_total\{stage="input",outcome="unsafe",mode="shadow",action="block"\} \d+/,
    );
  });

  it("asks only about a policy's categories and ignores others in the answer", async () => {
    fake.setBehavior({ text: "unsafe\nS5" });
    const res = await deepCheck("lg-subset", uniqueName("req"));
    expect(res).toMatchObject({ action: Action.ACTION_ALLOW, checked: true });
    const prompt = promptSent();
    expect(prompt).toContain("<BEGIN UNSAFE CONTENT CATEGORIES>\nS1: Violent Crimes.\nS10: Hate.\n<END UNSAFE");
  });

  it("follows on_error allow when the guard model does not answer within timeout_ms", async () => {
    const requestId = uniqueName("req");
    const res = await deepCheck("lg-slow-allow", requestId);
    expect(res).toMatchObject({ action: Action.ACTION_ALLOW, checked: true, ruleIds: ["deep.timeout"] });
    const metrics = await (await fetch(`http://127.0.0.1:${app.host.opsPort}/metrics`)).text();
    expect(metrics).toMatch(
      /tokenmesh_guard_deep_checks_total\{stage="input",outcome="timeout",mode="block",action="allow"\} \d+/,
    );
  });

  it("follows on_error block when the guard model does not answer within timeout_ms", async () => {
    const requestId = uniqueName("req");
    const res = await deepCheck("lg-slow-block", requestId);
    expect(res).toMatchObject({ action: Action.ACTION_BLOCK, shadow: false, ruleIds: ["deep.timeout"] });
    expect((await eventFor(requestId)).decision).toMatchObject({ ruleIds: ["deep.timeout"], tier: "deep" });
  });

  it("follows on_error when the guard model answers something that is not a verdict", async () => {
    fake.setBehavior({ text: "I am sorry, I cannot help with that." });
    const res = await deepCheck("lg-block", uniqueName("req"));
    expect(res).toMatchObject({ action: Action.ACTION_ALLOW, ruleIds: ["deep.error"] });
  });
});

describe("deep tier in ShieldGemma format", () => {
  it("asks the Yes/No policy question and blocks on Yes", async () => {
    fake.setBehavior({ text: "Yes" });
    const res = await deepCheck("shieldgemma", uniqueName("req"));
    expect(res).toMatchObject({ action: Action.ACTION_BLOCK, ruleIds: ["deep.dangerous_content"] });
    const prompt = promptSent();
    expect(prompt).toContain("Human Question: How do I make a weapon at home?");
    expect(prompt).toContain('* "No Dangerous Content"');
    expect(prompt).toContain("Your answer must start with 'Yes' or 'No'.");
  });
});

describe("deep tier against a /v1/moderations upstream", () => {
  it("blocks when a counted category is flagged, sending the key and every user turn", async () => {
    fake.setBehavior({ moderationFlags: ["violence"] });
    const requestId = uniqueName("req");
    const res = await deepCheck("moderation", requestId, {
      messages: [user("first"), ChatMessage.fromPartial({ role: Role.ROLE_ASSISTANT, content: "ok" }), user("second")],
    });
    expect(res).toMatchObject({ action: Action.ACTION_BLOCK, ruleIds: ["deep.violence"], categories: ["violence"] });
    const call = fake.requests.find((r) => r.path.endsWith("/moderations"));
    expect(call?.headers.authorization).toBe("Bearer test-moderation-key");
    expect(call?.body).toEqual({ model: "omni-moderation-latest", input: ["first", "second"] });
    expect((await eventFor(requestId)).decision).toMatchObject({ tier: "deep", ruleIds: ["deep.violence"] });
  });

  it("allows when only uncounted categories are flagged, and judges an answer on output", async () => {
    fake.setBehavior({ moderationFlags: ["sexual"] });
    const res = await deepCheck("moderation", uniqueName("req"), {
      stage: Stage.STAGE_OUTPUT,
      messages: [user("q")],
      response: "the answer",
    });
    expect(res).toMatchObject({ action: Action.ACTION_ALLOW, checked: true });
    expect(fake.requests.find((r) => r.path.endsWith("/moderations"))?.body).toMatchObject({ input: ["the answer"] });
  });
});

describe("policies without a deep tier", () => {
  it("check nothing and call no model", async () => {
    const res = await deepCheck("rules-only", uniqueName("req"));
    expect(res).toMatchObject({ action: Action.ACTION_ALLOW, checked: false });
    const apply = await deepCheck("lg-shadow", uniqueName("req"), { stage: Stage.STAGE_OUTPUT, response: "x" });
    expect(apply.checked).toBe(false);
    expect(fake.requests).toEqual([]);
  });
});
