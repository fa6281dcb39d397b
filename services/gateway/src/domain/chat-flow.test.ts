import { parseCatalog } from "@tokenmesh/catalog";
import { type ChatChunk, FinishReason, Role } from "@tokenmesh/proto/common/v1/chat";
import type { UsageRecorded } from "@tokenmesh/proto/events/v1/events";
import { AppError } from "@tokenmesh/runtime";
import { createLogger } from "@tokenmesh/telemetry";
import { describe, expect, it } from "vitest";
import { ChatFlow } from "./chat-flow.js";
import { hashSecret, type KeyRecord } from "./keys.js";
import type { Guard, OutputRelease, RouteEvent, Router } from "./ports.js";

const catalog = parseCatalog(
  `models:
  - { id: m, engine: openai, base_url: "http://x/v1", upstream_model: m, aliases: [alias] }
`,
  "/",
);

const key: KeyRecord = {
  id: "key_1",
  name: "k",
  team: "t",
  user: "",
  models: [],
  rpm: 0,
  tpm: 0,
  createdAt: "",
  hash: hashSecret("tm-secret"),
};

const delta = (content: string, finish = FinishReason.FINISH_REASON_UNSPECIFIED, role = Role.ROLE_UNSPECIFIED) => ({
  index: 0,
  role,
  content,
  toolCalls: [],
  finishReason: finish,
  refusal: "",
});
const chunk = (...choices: ReturnType<typeof delta>[]): ChatChunk => ({
  id: "up",
  created: 1,
  model: "m",
  choices,
  usage: undefined,
});

/** A guard that upper-cases released text and holds back the last character of each write until flush. */
function fakeGuard(log: string[]): Guard {
  return {
    async checkInput(_ctx, _model, messages) {
      return { action: "allow", messages, ruleIds: [], reason: "" };
    },
    async filterText(_ctx, texts) {
      return texts.map((t) => ({ ...t, text: t.text.toUpperCase(), blocked: false, ruleIds: [] }));
    },
    filterOutput(_ctx, onRelease: (r: OutputRelease) => void) {
      let held = "";
      return {
        write(index, text) {
          const all = held + text;
          held = all.slice(-1);
          log.push(`write:${text}`);
          if (all.length > 1)
            setImmediate(() => onRelease({ index, text: all.slice(0, -1).toUpperCase(), blocked: false, ruleIds: [] }));
        },
        flush(index) {
          log.push(`flush:${index}`);
          const rest = held.toUpperCase();
          held = "";
          return new Promise((resolve) => setImmediate(() => resolve({ text: rest, blocked: false, ruleIds: [] })));
        },
        close() {
          log.push("close");
        },
      };
    },
  };
}

function flowWith(events: RouteEvent[] | Router["route"], usage: UsageRecorded[], log: string[] = []) {
  const router: Router = {
    route:
      typeof events === "function"
        ? events
        : async function* () {
            yield* events;
          },
    embed: async () => {
      throw new Error("unused");
    },
    listModels: async () => [],
  };
  return new ChatFlow({
    catalog: () => catalog,
    keys: {
      create: async () => undefined,
      list: async () => [key],
      get: async () => key,
      revoke: async () => true,
      byHash: async (h) => (h === key.hash ? key : undefined),
    },
    adminKeyHash: undefined,
    limiter: {
      acquire: async () => ({ allowed: true, limitedBy: "", remainingRequests: -1, remainingTokens: -1, resetMs: 0 }),
      settle: async () => undefined,
    },
    guard: fakeGuard(log),
    router,
    cost: { reserve: async () => "", release: async () => undefined },
    budgets: { blocked: () => false, hasHard: async () => false },
    usage: { record: (e) => usage.push(e) },
    logger: createLogger({ service: "test", level: "silent" }),
  });
}

const call = (model = "alias") => ({
  authorization: "Bearer tm-secret",
  requestId: "req_1",
  signal: new AbortController().signal,
  endpoint: "chat" as const,
  request: {
    model,
    messages: [
      { role: Role.ROLE_USER, content: "hi", parts: [], name: "", toolCalls: [], toolCallId: "", refusal: "" },
    ],
    tools: [],
    stop: [],
    n: 1,
    user: "",
    stream: true,
    metadata: {},
  },
});

describe("ChatFlow", () => {
  it("streams filtered text in order: the finish waits for the guard's flush, usage comes last", async () => {
    const usage: UsageRecorded[] = [];
    const log: string[] = [];
    const flow = flowWith(
      [
        { route: { model: "m", provider: "openai", cacheHit: false, attempts: 1 } },
        { chunk: chunk(delta("", FinishReason.FINISH_REASON_UNSPECIFIED, Role.ROLE_ASSISTANT)) },
        { chunk: chunk(delta("ab")) },
        { chunk: chunk(delta("cd", FinishReason.FINISH_REASON_STOP)) },
        {
          chunk: {
            id: "up",
            created: 1,
            model: "m",
            choices: [],
            usage: { inputTokens: 3, outputTokens: 2, cachedTokens: 0 },
          },
        },
      ],
      usage,
      log,
    );
    const started = await flow.start(call());
    const out: ChatChunk[] = [];
    for await (const c of started.chunks) out.push(c);
    const text = out.flatMap((c) => c.choices.map((d) => d.content)).join("");
    expect(text).toBe("ABCD");
    const finishAt = out.findIndex((c) => c.choices.some((d) => d.finishReason === FinishReason.FINISH_REASON_STOP));
    const lastText = out.findLastIndex((c) => c.choices.some((d) => d.content !== ""));
    expect(finishAt).toBeGreaterThan(lastText);
    expect(out.at(-1)!.usage).toEqual({ inputTokens: 3, outputTokens: 2, cachedTokens: 0 });
    expect(out.every((c) => c.id === "req_1")).toBe(true);
    expect(log).toContain("flush:0");
    expect(log.at(-1)).toBe("close");
    expect(usage).toHaveLength(1);
    expect(usage[0]).toMatchObject({
      requestId: "req_1",
      keyId: "key_1",
      team: "t",
      model: "m",
      provider: "openai",
      status: "ok",
      outputTokens: 2,
    });
  });

  it("ends a stream that breaks after the first chunk with the error, and still records one usage event", async () => {
    const usage: UsageRecorded[] = [];
    const flow = flowWith(async function* () {
      yield { route: { model: "m", provider: "openai", cacheHit: false, attempts: 1 } };
      yield { chunk: chunk(delta("partial")) };
      throw new AppError("UNAVAILABLE", "upstream cut", { origin: "upstream" });
    }, usage);
    const started = await flow.start(call());
    const seen: string[] = [];
    await expect(
      (async () => {
        for await (const c of started.chunks) seen.push(...c.choices.map((d) => d.content));
      })(),
    ).rejects.toMatchObject({ code: "UNAVAILABLE" });
    expect(usage).toHaveLength(1);
    expect(usage[0]).toMatchObject({ status: "error", errorCode: "UNAVAILABLE" });
  });

  it("bills a stream cut short by its estimate of what was consumed, marked estimated", async () => {
    const usage: UsageRecorded[] = [];
    const flow = flowWith(async function* () {
      yield { route: { model: "m", provider: "openai", cacheHit: false, attempts: 1 } };
      yield { chunk: chunk(delta("the first few words of an answer")) };
      throw new AppError("UNAVAILABLE", "upstream cut", { origin: "upstream" });
    }, usage);
    const started = await flow.start(call());
    await expect(
      (async () => {
        for await (const _ of started.chunks) {
          // drain
        }
      })(),
    ).rejects.toMatchObject({ code: "UNAVAILABLE" });
    expect(usage[0]).toMatchObject({ status: "error", estimated: true });
    expect(usage[0]!.outputTokens).toBeGreaterThanOrEqual(7);
    expect(usage[0]!.inputTokens).toBeGreaterThan(0);
  });

  it("records a client that leaves mid-stream as cancelled, with what was generated so far", async () => {
    const usage: UsageRecorded[] = [];
    const ac = new AbortController();
    const flow = flowWith(async function* () {
      yield { route: { model: "m", provider: "openai", cacheHit: false, attempts: 1 } };
      yield { chunk: chunk(delta("one two three four")) };
      ac.abort();
      throw new AppError("CANCELLED", "client closed the connection");
    }, usage);
    const started = await flow.start({ ...call(), signal: ac.signal });
    await expect(
      (async () => {
        for await (const _ of started.chunks) {
          // drain
        }
      })(),
    ).rejects.toMatchObject({ code: "CANCELLED" });
    expect(usage[0]).toMatchObject({ status: "cancelled", estimated: true });
    expect(usage[0]!.outputTokens).toBe(4);
  });

  it("fails before the first byte with a proper error, recording usage for refused requests too", async () => {
    const usage: UsageRecorded[] = [];
    const flow = flowWith([], usage);
    await expect(flow.start(call("nope"))).rejects.toMatchObject({ code: "NOT_FOUND", reason: "model_not_found" });
    await expect(flow.start({ ...call(), authorization: "Bearer wrong" })).rejects.toMatchObject({
      code: "UNAUTHENTICATED",
    });
    await expect(flow.start(call())).rejects.toMatchObject({ code: "UNAVAILABLE" });
    expect(usage.map((u) => u.status)).toEqual(["error", "error", "error"]);
    expect(usage.map((u) => u.errorCode)).toEqual(["model_not_found", "invalid_api_key", "UNAVAILABLE"]);
  });

  it("filters a whole non-streamed answer with one guard call and gives it the request's id", async () => {
    const usage: UsageRecorded[] = [];
    const flow = flowWith(
      [
        { route: { model: "m", provider: "openai", cacheHit: true, attempts: 0 } },
        { chunk: chunk(delta("hello", FinishReason.FINISH_REASON_STOP, Role.ROLE_ASSISTANT)) },
        {
          chunk: {
            id: "up",
            created: 1,
            model: "m",
            choices: [],
            usage: { inputTokens: 1, outputTokens: 1, cachedTokens: 0 },
          },
        },
      ],
      usage,
    );
    const { response } = await flow.complete({ ...call(), request: { ...call().request, stream: false } });
    expect(response.id).toBe("req_1");
    expect(response.choices[0]?.message?.content).toBe("HELLO");
    expect(usage[0]).toMatchObject({ cacheHit: true, status: "ok", stream: false });
  });

  it("passes auto and auto:<tier> through for the router to resolve", async () => {
    const seen: string[] = [];
    const usage: UsageRecorded[] = [];
    const flow = flowWith(
      async function* (_ctx, request) {
        seen.push(request.model);
        yield { route: { model: "m", provider: "openai", cacheHit: false, attempts: 1 } };
        yield { chunk: chunk(delta("x", FinishReason.FINISH_REASON_STOP, Role.ROLE_ASSISTANT)) };
      } as Router["route"],
      usage,
    );
    for (const model of ["auto", "auto:large"]) {
      const started = await flow.start(call(model));
      for await (const _ of started.chunks) {
        // drain
      }
    }
    expect(seen).toEqual(["auto", "auto:large"]);
    expect(usage.map((u) => [u.modelRequested, u.model])).toEqual([
      ["auto", "m"],
      ["auto:large", "m"],
    ]);
  });
});
