import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ChatChunk, type ChatRequest, FinishReason, Role } from "@tokenmesh/proto/common/v1/chat";
import { InferenceServiceClient } from "@tokenmesh/proto/inference/v1/inference";
import { type AppError, callStream, callUnary, createGrpcClient, Lifecycle } from "@tokenmesh/runtime";
import { createLogger } from "@tokenmesh/telemetry";
import { waitFor } from "@tokenmesh/testing";
import { makeTestModels } from "@tokenmesh/testing/models";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../src/app.js";
import { InferenceConfigSchema } from "../src/config.js";

const logger = createLogger({ service: "inference-test", level: "silent" });
let catalogPath = "";
let app: ReturnType<typeof createApp>;
let client: InferenceServiceClient;

function chat(content: string, over: Partial<ChatRequest> = {}): ChatRequest {
  return {
    model: "",
    messages: [{ role: Role.ROLE_USER, content, parts: [], name: "", toolCalls: [], toolCallId: "", refusal: "" }],
    tools: [],
    stop: [],
    n: 1,
    user: "",
    stream: true,
    metadata: {},
    ...over,
  };
}

async function generate(model: string, request: ChatRequest, signal?: AbortSignal): Promise<ChatChunk[]> {
  const chunks: ChatChunk[] = [];
  for await (const res of callStream(
    client.generate.bind(client),
    { model, request },
    { signal, deadlineMs: 30_000 },
  )) {
    chunks.push(res.chunk!);
  }
  return chunks;
}

const text = (chunks: ChatChunk[]) => chunks.flatMap((c) => c.choices.map((d) => d.content)).join("");

beforeAll(async () => {
  const dir = await mkdtemp(join(tmpdir(), "inference-grpc-"));
  await makeTestModels(dir);
  catalogPath = join(dir, "mesh.yaml");
  await writeFile(
    catalogPath,
    `models:
  - { id: local-tiny, engine: local, source: ./tiny-chat.gguf, context_window: 1024, max_output_tokens: 64, slots: 2, queue_size: 1 }
  - { id: local-embed, engine: local, kind: embedding, source: ./tiny-embed.gguf, context_window: 256 }
  - { id: gpt, engine: openai, base_url: "http://127.0.0.1:9/v1", api_key_env: TEST_OPENAI_KEY, upstream_model: gpt-4o-mini }
  - { id: claude, engine: anthropic, upstream_model: claude-3-5-haiku-latest }
`,
  );
  const config = InferenceConfigSchema.parse({
    INFERENCE_HOST: "127.0.0.1",
    INFERENCE_GRPC_PORT: "0",
    INFERENCE_OPS_PORT: "0",
    MESH_CONFIG: join(dir, "mesh.yaml"),
    INFERENCE_MODELS_DIR: join(dir, "cache"),
  });
  app = createApp(config, { logger, lifecycle: new Lifecycle({ logger, deadlineMs: 3_000 }) });
  await app.start();
  client = createGrpcClient(InferenceServiceClient, `127.0.0.1:${app.host.grpcPort}`);
});

afterAll(async () => {
  client?.close();
  await app?.stop();
});

describe("InferenceService over gRPC", () => {
  it("lists its local models with engine, device and readiness, and skips the catalog's remote models", async () => {
    const { models } = await callUnary(client.listModels.bind(client), {});
    const tiny = models.find((m) => m.id === "local-tiny");
    expect(tiny).toMatchObject({ engine: "local", device: "cpu", ready: true, contextWindow: 1024 });
    expect(models.map((m) => m.id).sort()).toEqual(["local-embed", "local-tiny"]);
  });

  it("streams local tokens whose count equals the tokenizer's count of the output", async () => {
    const chunks = await generate("local-tiny", chat("hello there", { maxTokens: 24, seed: 1 }));
    const usage = chunks.at(-1)!.usage!;
    expect(usage.outputTokens).toBe(24);
    const counted = await callUnary(client.countTokens.bind(client), {
      model: "local-tiny",
      messages: [
        {
          role: Role.ROLE_ASSISTANT,
          content: text(chunks),
          parts: [],
          name: "",
          toolCalls: [],
          toolCallId: "",
          refusal: "",
        },
      ],
    });
    expect(counted.exact).toBe(true);
    // The byte-level vocabulary makes every output byte one token; countTokens adds the chat template's tokens.
    expect(Buffer.byteLength(text(chunks))).toBe(usage.outputTokens);
    expect(counted.tokens).toBeGreaterThan(usage.outputTokens);
    expect(chunks.some((c) => c.choices.some((d) => d.finishReason === FinishReason.FINISH_REASON_LENGTH))).toBe(true);
  });

  it("completes 2 concurrent requests on 2 slots, queues one, and refuses beyond the queue", async () => {
    const runs = [1, 2, 3].map((i) => generate("local-tiny", chat(`request ${i}`, { maxTokens: 48 })));
    const fourth = generate("local-tiny", chat("request 4", { maxTokens: 8 })).catch((e: AppError) => e);
    const results = await Promise.all(runs);
    for (const r of results) expect(r.at(-1)!.usage!.outputTokens).toBe(48);
    const refused = await fourth;
    expect((refused as AppError).code).toBe("RESOURCE_EXHAUSTED");
  });

  it("frees the slot when the caller cancels mid-stream", async () => {
    const ac = new AbortController();
    let seen = 0;
    const cancelled = (async () => {
      for await (const res of callStream(
        client.generate.bind(client),
        { model: "local-tiny", request: chat("long", { maxTokens: 64 }) },
        { signal: ac.signal },
      )) {
        if (res.chunk?.choices.some((d) => d.content) && ++seen === 3) ac.abort();
      }
    })().catch((e: AppError) => e);
    const err = await cancelled;
    expect((err as AppError).code).toBe("CANCELLED");
    // Both slots are free again: two full requests run at once and finish.
    const [a, b] = await Promise.all([
      generate("local-tiny", chat("a", { maxTokens: 16 })),
      generate("local-tiny", chat("b", { maxTokens: 16 })),
    ]);
    expect(a.at(-1)!.usage!.outputTokens + b.at(-1)!.usage!.outputTokens).toBe(32);
  });

  it("embeds with the local embedding model", async () => {
    const res = await callUnary(client.embed.bind(client), {
      model: "local-embed",
      request: { model: "local-embed", input: ["a", "b"], user: "" },
    });
    expect(res.response!.data).toHaveLength(2);
    expect(res.response!.data[0]!.values.length).toBeGreaterThan(0);
  });

  it("answers NOT_FOUND for a remote model of the catalog and for an unknown one", async () => {
    const fail = (model: string) =>
      generate(model, chat("x")).then(
        () => undefined,
        (e: AppError) => e,
      );
    expect(await fail("gpt")).toMatchObject({ code: "NOT_FOUND", reason: "model_not_found" });
    expect(await fail("no-such-model")).toMatchObject({ code: "NOT_FOUND" });
  });

  it("reloads a changed catalog without dropping a stream in flight", async () => {
    const { readFile } = await import("node:fs/promises");
    const original = await readFile(catalogPath, "utf8");
    const ac = new AbortController();
    const inflight = generate("local-tiny", chat("keep going", { maxTokens: 64 }), ac.signal);
    try {
      await writeFile(
        catalogPath,
        `${original.replace("max_output_tokens: 64, slots: 2", "max_output_tokens: 32, slots: 3")}  - { id: local-embed-2, engine: local, kind: embedding, source: ./tiny-embed.gguf, context_window: 256 }\n`,
      );
      await waitFor(
        async () =>
          (await callUnary(client.listModels.bind(client), {})).models.some((m) => m.id === "local-embed-2" && m.ready),
        { description: "the reloaded catalog's new model" },
      );
      const chunks = await inflight;
      expect(chunks.at(-1)!.usage!.outputTokens).toBe(64);
      // The reloaded entry applies to new requests (max_output_tokens now caps at 32).
      const after = await generate("local-tiny", chat("after", { maxTokens: 64 }));
      expect(after.at(-1)!.usage!.outputTokens).toBe(32);
    } finally {
      await writeFile(catalogPath, original);
    }
  });
});
