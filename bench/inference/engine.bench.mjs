// Raw LocalEngine throughput on the tiny test model (or any GGUF): tokens/s for 1 stream and aggregate for N
// concurrent streams, one summary line per run. No tsx: it runs the compiled service.
//
//   npm run build -w @tokenmesh/inference && node bench/inference/engine.bench.mjs [--model path.gguf] [--slots 4]
//     [--tokens 256] [--threads 0]
//
// Without --model it generates models/tiny-chat.gguf (deterministic, see write-test-gguf.ts) if missing.
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { ModelEntrySchema } from "@tokenmesh/catalog";
import { ChatRequest, Role } from "@tokenmesh/proto/common/v1/chat";

const dist = new URL("../../services/inference/dist/", import.meta.url);
const { LocalEngine } = await import(new URL("engines/local/local-engine.js", dist).href);
const { makeTestModels } = await import(new URL("models/make-test-models.js", dist).href);

const { values: args } = parseArgs({
  options: {
    model: { type: "string" },
    slots: { type: "string", default: "4" },
    tokens: { type: "string", default: "256" },
    threads: { type: "string", default: "0" },
  },
});
const slots = Number(args.slots);
const tokens = Number(args.tokens);
const source = args.model ?? (await makeTestModels(new URL("../../models", import.meta.url).pathname)).chat;

const engine = new LocalEngine({ modelsDir: await mkdtemp(join(tmpdir(), "tokenmesh-bench-")) });
const model = ModelEntrySchema.parse({
  id: "bench",
  engine: "local",
  source,
  slots,
  queue_size: 64,
  threads: Number(args.threads),
  max_output_tokens: tokens,
  context_window: 2048,
});

const t0 = performance.now();
await engine.load(model);
const loadMs = performance.now() - t0;
const status = engine.status(model);
if (!status.ready) throw new Error(`model not ready: ${status.detail}`);

async function stream(seed) {
  const request = ChatRequest.fromPartial({
    messages: [{ role: Role.ROLE_USER, content: "Write a long story." }],
    maxTokens: tokens,
    temperature: 0.8,
    seed,
  });
  let out = 0;
  for await (const c of engine.generate({
    requestId: `b${seed}`,
    model,
    request,
    signal: new AbortController().signal,
  })) {
    if (c.usage) out = c.usage.outputTokens;
  }
  return out;
}

async function measure(n) {
  const start = performance.now();
  const counts = await Promise.all(Array.from({ length: n }, (_, i) => stream(i + 1)));
  const total = counts.reduce((a, b) => a + b, 0);
  return total / ((performance.now() - start) / 1000);
}

await measure(1); // warm-up
const one = await measure(1);
const many = await measure(slots);
await engine.close();
console.log(
  `engine.bench model=${source.split("/").at(-1)} device=${status.device} load_ms=${loadMs.toFixed(0)} ` +
    `tokens=${tokens} 1x=${one.toFixed(0)} tok/s ${slots}x=${many.toFixed(0)} tok/s aggregate (${(many / slots).toFixed(0)}/stream)`,
);
