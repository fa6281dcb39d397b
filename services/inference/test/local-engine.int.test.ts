import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type LocalModelEntry, ModelEntrySchema } from "@tokenmesh/catalog";
import { type ChatChunk, ChatRequest, FinishReason, Role } from "@tokenmesh/proto/common/v1/chat";
import { waitFor } from "@tokenmesh/testing";
import { makeTestModels } from "@tokenmesh/testing/models";
import { getLlama, LlamaLogLevel, type LlamaModel } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalEngine } from "../src/engines/local/local-engine.js";

// The real engine on the tiny generated models: no mocks. The chat model only emits lowercase letters, spaces,
// "," and "." and never ends by itself (see @tokenmesh/testing/models), so every generation runs to max_tokens or a stop.

let dir: string;
let engine: LocalEngine;
let tokenizer: LlamaModel;
const gauges = { maxActive: 0, maxQueue: 0, queue: 0, tokens: 0, firstTokens: 0 };

const local = (fields: Record<string, unknown>): LocalModelEntry =>
  ModelEntrySchema.parse({ engine: "local", ...fields }) as LocalModelEntry;
let chat: LocalModelEntry;
/** The same model with three slots (two streams generating while a third request starts). */
let chat3: LocalModelEntry;
let embed: LocalModelEntry;

function request(fields: Partial<ChatRequest> = {}): ChatRequest {
  return ChatRequest.fromPartial({
    model: "tiny",
    messages: [
      { role: Role.ROLE_SYSTEM, content: "You are terse." },
      { role: Role.ROLE_USER, content: "Say something ☃." },
    ],
    ...fields,
  });
}

interface Outcome {
  text: string;
  chunks: ChatChunk[];
  finish: FinishReason | undefined;
  usage: ChatChunk["usage"];
}

async function run(
  req: ChatRequest,
  signal = new AbortController().signal,
  onChunk?: (c: ChatChunk) => void,
  model: LocalModelEntry = chat,
): Promise<Outcome> {
  const out: Outcome = { text: "", chunks: [], finish: undefined, usage: undefined };
  for await (const c of engine.generate({ requestId: `r-${Math.random()}`, model, request: req, signal })) {
    out.chunks.push(c);
    onChunk?.(c);
    for (const d of c.choices) {
      out.text += d.content;
      if (d.finishReason !== FinishReason.FINISH_REASON_UNSPECIFIED) out.finish = d.finishReason;
    }
    if (c.usage !== undefined) out.usage = c.usage;
  }
  return out;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tokenmesh-local-engine-"));
  const paths = await makeTestModels(dir);
  chat = local({
    id: "tiny",
    source: paths.chat,
    slots: 2,
    queue_size: 2,
    max_output_tokens: 512,
    context_window: 2048,
  });
  chat3 = local({ id: "tiny-3", source: paths.chat, slots: 3, max_output_tokens: 512, context_window: 2048 });
  embed = local({ id: "tiny-embed", kind: "embedding", source: paths.embedding });
  engine = new LocalEngine({
    modelsDir: join(dir, "cache"),
    downloadStallTimeoutMs: 5000,
    observer: {
      active: (_m, n) => {
        gauges.maxActive = Math.max(gauges.maxActive, n);
      },
      queueDepth: (_m, n) => {
        gauges.queue = n;
        gauges.maxQueue = Math.max(gauges.maxQueue, n);
      },
      tokens: (_m, n) => {
        gauges.tokens += n;
      },
      firstToken: () => {
        gauges.firstTokens++;
      },
    },
  });
  await Promise.all([engine.load(chat), engine.load(chat3), engine.load(embed)]);
  const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
  tokenizer = await llama.loadModel({ modelPath: paths.chat });
});

afterAll(async () => {
  await engine?.close();
  await tokenizer?.dispose();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe("LocalEngine", () => {
  it("loads the tiny models and reports them ready on the cpu", () => {
    expect(engine.status(chat)).toEqual({ ready: true, device: "cpu" });
    expect(engine.status(embed)).toEqual({ ready: true, device: "cpu" });
  });

  it("streams a role first, content deltas, a finish reason, then usage matching the tokenizer", async () => {
    const tokensBefore = gauges.tokens;
    const out = await run(request({ maxTokens: 60, temperature: 0.9, seed: 7 }));
    expect(out.chunks[0]?.choices[0]?.role).toBe(Role.ROLE_ASSISTANT);
    expect(out.chunks.slice(1).every((c) => c.choices.every((d) => d.role === Role.ROLE_UNSPECIFIED))).toBe(true);
    const last = out.chunks.at(-1);
    expect(last?.choices).toEqual([]);
    expect(out.finish).toBe(FinishReason.FINISH_REASON_LENGTH);
    expect(out.usage?.outputTokens).toBe(60);
    expect(tokenizer.tokenize(out.text).length).toBe(out.usage?.outputTokens);
    const count = await engine.countTokens(chat, request().messages);
    expect(count).toEqual({ tokens: out.usage?.inputTokens, exact: true });
    expect(gauges.tokens - tokensBefore).toBe(60);
  });

  it("with stream_interval_ms, sends the same text and usage in fewer chunks", async () => {
    const req = request({ maxTokens: 80, temperature: 0.9, seed: 11 });
    const each = await run(req);
    const gathered = await run(req, undefined, undefined, { ...chat, stream_interval_ms: 40 });
    expect(gathered.text).toBe(each.text);
    expect(gathered.usage).toEqual(each.usage);
    expect(gathered.finish).toBe(each.finish);
    expect(gathered.chunks[0]?.choices[0]?.role).toBe(Role.ROLE_ASSISTANT);
    const textChunks = (o: Outcome) => o.chunks.filter((c) => c.choices.some((d) => d.content)).length;
    expect(textChunks(each)).toBeGreaterThan(40);
    expect(textChunks(gathered)).toBeLessThan(textChunks(each) / 2);
  });

  it("respects max_tokens and caps it at the catalog's max_output_tokens", async () => {
    const short = await run(request({ maxTokens: 7 }));
    expect(short.usage?.outputTokens).toBe(7);
    expect(short.finish).toBe(FinishReason.FINISH_REASON_LENGTH);
    expect(tokenizer.tokenize(short.text).length).toBe(7);
    const capped = await run(request({ maxTokens: 100_000, temperature: 0 }));
    expect(capped.usage?.outputTokens).toBe(chat.max_output_tokens);
  });

  it("gives the same output for the same seed, at temperature 0 and above", async () => {
    const a = await run(request({ maxTokens: 40, temperature: 0 }));
    const b = await run(request({ maxTokens: 40, temperature: 0 }));
    expect(b.text).toBe(a.text);
    const c = await run(request({ maxTokens: 40, temperature: 1, seed: 42 }));
    const d = await run(request({ maxTokens: 40, temperature: 1, seed: 42 }));
    expect(d.text).toBe(c.text);
  });

  it("stops before a stop string and reports finish_reason stop", async () => {
    const full = await run(request({ maxTokens: 80, temperature: 1, seed: 3 }));
    const stop = full.text.slice(20, 23);
    const cut = await run(request({ maxTokens: 80, temperature: 1, seed: 3, stop: [stop] }));
    expect(cut.finish).toBe(FinishReason.FINISH_REASON_STOP);
    expect(cut.text).toBe(full.text.slice(0, full.text.indexOf(stop)));
  });

  it("runs 4 concurrent requests on 2 slots, queueing the other 2", async () => {
    gauges.maxActive = 0;
    gauges.maxQueue = 0;
    const outs = await Promise.all([1, 2, 3, 4].map((seed) => run(request({ maxTokens: 50, temperature: 1, seed }))));
    for (const o of outs) {
      expect(o.finish).toBe(FinishReason.FINISH_REASON_LENGTH);
      expect(o.usage?.outputTokens).toBe(50);
      expect(tokenizer.tokenize(o.text).length).toBe(50);
    }
    expect(gauges.maxActive).toBe(2);
    expect(gauges.maxQueue).toBe(2);
    expect(gauges.queue).toBe(0);
  });

  it("refuses a request with RESOURCE_EXHAUSTED when slots and queue are full", async () => {
    const results = await Promise.allSettled([1, 2, 3, 4, 5].map((seed) => run(request({ maxTokens: 200, seed }))));
    const rejected = results.filter((r) => r.status === "rejected");
    expect(rejected).toHaveLength(1);
    expect((rejected[0] as PromiseRejectedResult).reason).toMatchObject({
      code: "RESOURCE_EXHAUSTED",
      retryable: true,
    });
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(4);
  });

  it("frees the slot of a request cancelled mid-stream for the next queued request", async () => {
    const cancelA = new AbortController();
    let bDone = false;
    let cFirstTokenWhileBRunning: boolean | undefined;
    let aChunks = 0;
    const a = run(request({ maxTokens: 2000 }), cancelA.signal, () => {
      if (++aChunks === 3) cancelA.abort();
    });
    const b = run(request({ maxTokens: 2000 })).then((o) => {
      bDone = true;
      return o;
    });
    const c = run(request({ maxTokens: 20 }), undefined, () => {
      cFirstTokenWhileBRunning ??= !bDone;
    });
    await expect(a).rejects.toMatchObject({ code: "CANCELLED" });
    const cOut = await c;
    expect(cOut.usage?.outputTokens).toBe(20);
    expect(cFirstTokenWhileBRunning).toBe(true);
    expect(aChunks).toBeLessThan(6);
    expect((await b).usage?.outputTokens).toBe(chat.max_output_tokens);
  });

  it("starts a request beside generating streams at once, not when they end", async () => {
    // Three slots, each holding what a previous request left: the next request on any of them must erase it first.
    await Promise.all([1, 2, 3].map((seed) => run(request({ maxTokens: 20, seed }), undefined, undefined, chat3)));
    const events: string[] = [];
    let aChunks = 0;
    let cRun: Promise<Outcome> | undefined;
    const long = (seed: number, onChunk?: () => void) =>
      run(request({ maxTokens: 512, seed }), undefined, onChunk, chat3).finally(() => events.push("long done"));
    const a = long(4, () => {
      // C comes once A and B are generating.
      if (++aChunks === 3) {
        cRun = run(request({ maxTokens: 5, seed: 6 }), undefined, undefined, chat3).finally(() =>
          events.push("c done"),
        );
      }
    });
    const b = long(5);
    const outs = await Promise.all([a, b]);
    const c = await cRun;
    expect(outs.map((o) => o.usage?.outputTokens)).toEqual([512, 512]);
    expect(c?.usage?.outputTokens).toBe(5);
    // Without the state gate, C's state change waited for the decode loop of A and B to run dry: for their last token.
    expect(events).toEqual(["c done", "long done", "long done"]);
  });

  it("drops a cancelled request from the queue at once", async () => {
    const busy = [run(request({ maxTokens: 300 })), run(request({ maxTokens: 300 }))];
    const cancel = new AbortController();
    const queued = run(request({ maxTokens: 5 }), cancel.signal);
    // Polled every millisecond: the two busy requests must still hold both slots when the third is seen queued.
    await waitFor(() => gauges.queue === 1, { intervalMs: 1, timeoutMs: 5_000, description: "one queued request" });
    cancel.abort();
    await expect(queued).rejects.toMatchObject({ code: "CANCELLED" });
    expect(gauges.queue).toBe(0);
    await Promise.all(busy);
  });

  it("refuses tools with INVALID_ARGUMENT", async () => {
    const req = request({ tools: [{ type: "function", function: { name: "f", description: "", parameters: {} } }] });
    await expect(run(req)).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
      message: "model tiny does not support tools",
    });
  });

  it("constrains output to JSON with response_format json_object", async () => {
    const out = await run(request({ maxTokens: 200, temperature: 0.5, seed: 1, responseFormat: { type: 2 } }));
    // Left alone the model never emits "{" or stops; the grammar makes it write a complete JSON object.
    expect(out.finish).toBe(FinishReason.FINISH_REASON_STOP);
    expect(typeof JSON.parse(out.text)).toBe("object");
  });

  it("embeds with the model's dimension, deterministically and unit-normalised", async () => {
    const call = (input: string[]) =>
      engine.embed({
        requestId: "e",
        model: embed,
        request: { model: "tiny-embed", input, user: "" },
        signal: new AbortController().signal,
      });
    const a = await call(["hello world", "something else"]);
    const b = await call(["hello world"]);
    expect(a.data).toHaveLength(2);
    expect(a.data[0]?.values).toHaveLength(64);
    expect(b.data[0]?.values).toEqual(a.data[0]?.values);
    expect(a.data[1]?.values).not.toEqual(a.data[0]?.values);
    const norm = Math.hypot(...(a.data[0]?.values ?? []));
    expect(norm).toBeCloseTo(1, 5);
    expect(a.usage?.inputTokens).toBe("hello world".length + "something else".length);
  });

  it("reports an unreachable hf: source in status without failing load", async () => {
    const hf = local({ id: "remote", source: "hf:tokenmesh-test/missing-GGUF/missing-Q4_K_M.gguf" });
    await expect(engine.load(hf)).resolves.toBeUndefined();
    const status = engine.status(hf);
    expect(status.ready).toBe(false);
    expect(status.detail).toMatch(/^cannot download hf:tokenmesh-test\/missing-GGUF\/missing-Q4_K_M\.gguf/);
    await expect(run(request(), undefined, undefined, hf)).rejects.toMatchObject({
      code: "UNAVAILABLE",
      retryable: true,
    });
    await engine.unload("remote");
  });

  it("reports a missing GGUF path in status", async () => {
    const missing = local({ id: "missing", source: join(dir, "nope.gguf") });
    await engine.load(missing);
    expect(engine.status(missing)).toMatchObject({
      ready: false,
      detail: `model file not found: ${join(dir, "nope.gguf")}`,
    });
    await engine.unload("missing");
  });
});
