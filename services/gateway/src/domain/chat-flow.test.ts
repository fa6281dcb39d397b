import { parseCatalog } from "@tokenmesh/catalog";
import { type ChatChunk, type ChatDelta, FinishReason, Role } from "@tokenmesh/proto/common/v1/chat";
import type { UsageRecorded } from "@tokenmesh/proto/events/v1/events";
import { AppError } from "@tokenmesh/runtime";
import { createLogger } from "@tokenmesh/telemetry";
import { describe, expect, it } from "vitest";
import { ChatFlow } from "./chat-flow.js";
import { hashSecret, type KeyRecord } from "./keys.js";
import type { Guard, OutputRelease, OutputSlot, RouteEvent, Router } from "./ports.js";

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

const delta = (
  content: string,
  finish = FinishReason.FINISH_REASON_UNSPECIFIED,
  role = Role.ROLE_UNSPECIFIED,
): ChatDelta => ({
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

/**
 * A guard that filters each (choice, slot) on its own, like the real one: "SECRET" becomes "[R]", "BOOM" blocks the
 * output. It holds back the last five characters of each slot until the choice is flushed and releases
 * asynchronously (as a remote guard would), logging what it was given.
 */
function slotGuard(log: string[]): Guard {
  const filter = (text: string) => text.replaceAll("SECRET", "[R]");
  return {
    async checkInput(_ctx, _model, messages) {
      return { action: "allow", messages, ruleIds: [], reason: "" };
    },
    async filterText(_ctx, texts) {
      log.push(...texts.map((t) => `text:${t.index}/${t.slot ?? "content"}`));
      const blocked = texts.some((t) => t.text.includes("BOOM"));
      return texts.map((t) => ({ ...t, text: blocked ? "" : filter(t.text), blocked, ruleIds: [] }));
    },
    filterOutput(_ctx, onRelease: (r: OutputRelease) => void) {
      const held = new Map<string, { index: number; slot: OutputSlot; text: string }>();
      let blocked = false;
      const later = (r: OutputRelease) => setImmediate(() => onRelease(r));
      return {
        write(index, text, slot = "content") {
          log.push(`write:${index}/${slot}:${text}`);
          if (blocked) return;
          if (text.includes("BOOM")) {
            blocked = true;
            later({ index, slot, text: "", blocked: true, ruleIds: ["pattern.boom"] });
            return;
          }
          // Filter what is pending, then hold its last five characters: a "SECRET" cut by a write stays whole.
          const key = `${index}/${slot}`;
          const all = filter((held.get(key)?.text ?? "") + text);
          held.set(key, { index, slot, text: all.slice(-5) });
          if (all.length > 5) later({ index, slot, text: all.slice(0, -5), blocked: false, ruleIds: [] });
        },
        flush(index) {
          log.push(`flush:${index}`);
          let content = "";
          for (const [key, h] of held) {
            if (h.index !== index) continue;
            held.delete(key);
            if (h.slot === "content") content = h.text;
            else later({ index, slot: h.slot, text: filter(h.text), blocked: false, ruleIds: [] });
          }
          return new Promise((resolve) => setImmediate(() => resolve({ text: content, blocked, ruleIds: [] })));
        },
        close() {
          log.push("close");
        },
      };
    },
  };
}

function flowWith(
  events: RouteEvent[] | Router["route"],
  usage: UsageRecorded[],
  log: string[] = [],
  guard: Guard = fakeGuard(log),
) {
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
    guard,
    router,
    cost: { reserve: async () => "", release: async () => undefined },
    budgets: { blocked: () => false, hasHard: async () => false },
    usage: { record: (e) => void usage.push(e) },
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

  it("checks a speculative request's fast model like the requested one, before anything runs", async () => {
    const usage: UsageRecorded[] = [];
    let routed = 0;
    const flow = flowWith(
      async function* () {
        routed++;
        yield { route: { model: "m", provider: "openai", cacheHit: false, attempts: 1 } };
      } as Router["route"],
      usage,
    );
    await expect(
      flow.start({ ...call(), hints: { prefer: "", speculativeModel: "no-such-model" } } as never),
    ).rejects.toMatchObject({ code: "NOT_FOUND", reason: "model_not_found" });
    expect(routed).toBe(0);
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

const toolDelta = (index: number, id: string, name: string, args: string) => ({
  ...delta(""),
  toolCalls: [{ index, id, type: id ? "function" : "", function: { name, arguments: args } }],
});
const routed = { route: { model: "m", provider: "openai", cacheHit: false, attempts: 1 } };

/** A choice delta's kind, for asserting order: role, content, refusal, tool:<n> (header or args), finish. */
function kinds(out: ChatChunk[]): string[] {
  return out.flatMap((c) =>
    c.choices.flatMap((d) => [
      ...(d.role !== Role.ROLE_UNSPECIFIED ? ["role"] : []),
      ...(d.content ? ["content"] : []),
      ...(d.refusal ? ["refusal"] : []),
      ...d.toolCalls.map((t) => (t.id ? `tool:${t.index}:header` : `tool:${t.index}:args`)),
      ...(d.finishReason !== FinishReason.FINISH_REASON_UNSPECIFIED ? [`finish:${d.finishReason}`] : []),
    ]),
  );
}

const argsOf = (out: ChatChunk[], tool: number) =>
  out
    .flatMap((c) => c.choices.flatMap((d) => d.toolCalls.filter((t) => t.index === tool)))
    .map((t) => t.function?.arguments ?? "")
    .join("");

describe("ChatFlow output guard: tool-call arguments and refusals", () => {
  it("redacts streamed tool-call arguments and refusals slot by slot, headers before arguments, finish last", async () => {
    const log: string[] = [];
    const flow = flowWith(
      [
        routed,
        { chunk: chunk(delta("Looking up SECRET now", FinishReason.FINISH_REASON_UNSPECIFIED, Role.ROLE_ASSISTANT)) },
        { chunk: chunk(toolDelta(0, "call_1", "lookup", '{"q":')) },
        { chunk: chunk(toolDelta(0, "", "", '"SECRET"}')) },
        { chunk: chunk(toolDelta(1, "call_2", "notify", '{"to":"SECRET"}')) },
        { chunk: chunk({ ...delta(""), refusal: "I won't say SECRET" }) },
        { chunk: chunk(delta("", FinishReason.FINISH_REASON_TOOL_CALLS)) },
      ],
      [],
      log,
      slotGuard(log),
    );
    const out: ChatChunk[] = [];
    for await (const c of (await flow.start(call())).chunks) out.push(c);

    expect(out.flatMap((c) => c.choices.map((d) => d.content)).join("")).toBe("Looking up [R] now");
    expect(argsOf(out, 0)).toBe('{"q":"[R]"}');
    expect(argsOf(out, 1)).toBe('{"to":"[R]"}');
    expect(out.flatMap((c) => c.choices.map((d) => d.refusal)).join("")).toBe("I won't say [R]");
    expect(JSON.stringify(out)).not.toContain("SECRET");
    // Every argument fragment went through the filter as its tool call's slot.
    expect(log).toContain('write:0/tool:0:"SECRET"}');
    expect(log).toContain("write:0/refusal:I won't say SECRET");

    const k = kinds(out);
    expect(k[0]).toBe("role");
    expect(k.indexOf("tool:0:header")).toBeLessThan(k.indexOf("tool:0:args"));
    expect(k.indexOf("tool:1:header")).toBeLessThan(k.indexOf("tool:1:args"));
    expect(k.at(-1)).toBe(`finish:${FinishReason.FINISH_REASON_TOOL_CALLS}`);
    expect(k.filter((x) => x.startsWith("finish"))).toHaveLength(1);
    // The headers themselves carry no arguments: those come only through the filter.
    const header = out.flatMap((c) => c.choices.flatMap((d) => d.toolCalls)).find((t) => t.id === "call_1");
    expect(header).toMatchObject({ id: "call_1", type: "function", function: { name: "lookup", arguments: "" } });
  });

  it("ends the stream with content_filter when tool-call arguments block, sending nothing after", async () => {
    const log: string[] = [];
    const flow = flowWith(
      [
        routed,
        { chunk: chunk(delta("Sure, ", FinishReason.FINISH_REASON_UNSPECIFIED, Role.ROLE_ASSISTANT)) },
        { chunk: chunk(toolDelta(0, "call_1", "run", '{"cmd":"BOOM"}')) },
        { chunk: chunk(delta("and more text after the block")) },
        { chunk: chunk(toolDelta(0, "", "", '{"more":1}')) },
        { chunk: chunk(delta("", FinishReason.FINISH_REASON_TOOL_CALLS)) },
      ],
      [],
      log,
      slotGuard(log),
    );
    const out: ChatChunk[] = [];
    for await (const c of (await flow.start(call())).chunks) out.push(c);
    const k = kinds(out);
    expect(k.at(-1)).toBe(`finish:${FinishReason.FINISH_REASON_CONTENT_FILTER}`);
    expect(k.filter((x) => x.startsWith("finish"))).toHaveLength(1);
    expect(argsOf(out, 0)).toBe("");
    expect(JSON.stringify(out)).not.toContain("BOOM");
    expect(JSON.stringify(out)).not.toContain("after the block");
    expect(log.at(-1)).toBe("close");
  });

  it("filters a whole answer's tool-call arguments and refusal in the same guard call as its content", async () => {
    const log: string[] = [];
    const flow = flowWith(
      [
        routed,
        {
          chunk: chunk({
            ...toolDelta(0, "call_1", "lookup", '{"q":"SECRET"}'),
            role: Role.ROLE_ASSISTANT,
            content: "Calling SECRET",
            refusal: "no SECRET",
          }),
        },
        { chunk: chunk(delta("", FinishReason.FINISH_REASON_TOOL_CALLS)) },
      ],
      [],
      log,
      slotGuard(log),
    );
    const { response } = await flow.complete({ ...call(), request: { ...call().request, stream: false } });
    const m = response.choices[0]?.message;
    expect(m?.content).toBe("Calling [R]");
    expect(m?.refusal).toBe("no [R]");
    expect(m?.toolCalls[0]?.function).toEqual({ name: "lookup", arguments: '{"q":"[R]"}' });
    expect(response.choices[0]?.finishReason).toBe(FinishReason.FINISH_REASON_TOOL_CALLS);
    expect(log.filter((l) => l.startsWith("text:"))).toEqual(["text:0/content", "text:0/refusal", "text:0/tool:0"]);
  });

  it("empties a whole answer whose tool-call arguments block: no tool calls, finish content_filter", async () => {
    const flow = flowWith(
      [
        routed,
        { chunk: chunk({ ...toolDelta(0, "call_1", "run", '{"cmd":"BOOM"}'), role: Role.ROLE_ASSISTANT }) },
        { chunk: chunk(delta("", FinishReason.FINISH_REASON_TOOL_CALLS)) },
      ],
      [],
      [],
      slotGuard([]),
    );
    const { response } = await flow.complete({ ...call(), request: { ...call().request, stream: false } });
    expect(response.choices[0]?.finishReason).toBe(FinishReason.FINISH_REASON_CONTENT_FILTER);
    expect(response.choices[0]?.message?.toolCalls).toEqual([]);
    expect(JSON.stringify(response)).not.toContain("BOOM");
  });
});
