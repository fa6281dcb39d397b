// The p99 wait of interactive requests while the local engine is saturated with batch requests, with priority classes
// (batch -1, interactive 1 in RequestContext.priority) against the same load with priorities off (every request
// batch: one class and one tenant, which is exactly the engine's old FIFO order). Prints one line; see README.md.
//
//   npx tsc -p services/inference/tsconfig.build.json && node_modules/.bin/node bench/admission/run.mjs
//     [--model path.gguf] [--slots 4] [--batch 64] [--probes 300] [--every 25] [--batch-tokens 64] [--probe-tokens 8]
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { ModelEntrySchema } from "@tokenmesh/catalog";
import { ChatRequest, Role } from "@tokenmesh/proto/common/v1/chat";
import { writeTestChatModel } from "@tokenmesh/testing/models";

const root = fileURLToPath(new URL("../../", import.meta.url));
const { LocalEngine } = await import(
  new URL("services/inference/dist/engines/local/local-engine.js", `file://${root}`).href
);

const { values: args } = parseArgs({
  options: {
    model: { type: "string" },
    slots: { type: "string", default: "4" },
    batch: { type: "string", default: "64" },
    probes: { type: "string", default: "300" },
    every: { type: "string", default: "25" },
    "batch-tokens": { type: "string", default: "64" },
    "probe-tokens": { type: "string", default: "8" },
  },
});
const n = (k) => Number.parseInt(args[k], 10);
const log = (msg) => process.stderr.write(`[bench] ${msg}\n`);

const work = await mkdtemp(join(tmpdir(), "tokenmesh-admission-"));
let modelPath = args.model ?? join(root, "models/tiny-chat.gguf");
if (!existsSync(modelPath)) {
  modelPath = join(work, "tiny-chat.gguf");
  await writeTestChatModel(modelPath);
}
const model = ModelEntrySchema.parse({
  id: "bench",
  engine: "local",
  source: modelPath,
  slots: n("slots"),
  queue_size: 4096,
  max_output_tokens: Math.max(n("batch-tokens"), n("probe-tokens")),
  context_window: 2048,
});
let queued = 0;
const engine = new LocalEngine({
  modelsDir: join(work, "cache"),
  logger: { info() {}, warn() {}, error() {} },
  observer: { queueDepth: (_m, depth) => (queued = depth) },
});
await engine.load(model);
if (!engine.status(model).ready) throw new Error(`model not ready: ${engine.status(model).detail}`);

let seq = 0;
/** Time from the call to the first chunk with text (queue wait, then prefill and one decode). */
async function generate(priority, maxTokens) {
  const start = performance.now();
  let first;
  for await (const c of engine.generate({
    requestId: `r${seq++}`,
    model,
    request: ChatRequest.fromPartial({
      messages: [{ role: Role.ROLE_USER, content: "Write a long story." }],
      maxTokens,
      temperature: 0.8,
      seed: seq,
    }),
    signal: new AbortController().signal,
    priority,
    tenant: "bench",
  })) {
    if (first === undefined && c.choices.some((d) => d.content)) first = performance.now();
  }
  return (first ?? performance.now()) - start;
}

/** Keeps `--batch` batch requests in flight; probes with one "interactive" request every `--every` ms. */
async function run(interactivePriority) {
  let stop = false;
  const workers = Array.from({ length: n("batch") }, async () => {
    while (!stop) await generate(-1, n("batch-tokens"));
  });
  // Saturated: every slot busy and the rest of the batch requests queued, before the first probe.
  while (queued < n("batch") - n("slots")) await new Promise((r) => setImmediate(r));
  const waits = [];
  const probes = [];
  for (let i = 0; i < n("probes"); i++) {
    probes.push(generate(interactivePriority, n("probe-tokens")).then((w) => waits.push(w)));
    await new Promise((r) => setTimeout(r, n("every")));
  }
  await Promise.all(probes);
  stop = true;
  await Promise.all(workers);
  return waits.sort((a, b) => a - b);
}

const p = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
await run(1); // warm-up, not counted
const on = await run(1);
const off = await run(-1);
const onP99 = p(on, 0.99);
const offP99 = p(off, 0.99);
log(
  `with priorities: p50 ${p(on, 0.5).toFixed(1)} ms, p99 ${onP99.toFixed(1)} ms; without: p50 ${p(off, 0.5).toFixed(1)} ms, p99 ${offP99.toFixed(1)} ms`,
);
console.log(
  `admission: interactive p99 wait ${onP99.toFixed(1)} ms with priorities vs ${offP99.toFixed(1)} ms without, ratio ${(onP99 / offP99).toFixed(3)}x (target <= 0.2x); local engine ${model.slots} slots, ${n("batch")} batch requests in flight (${n("batch-tokens")} tokens each), ${n("probes")} interactive probes every ${n("every")} ms, device ${engine.status(model).device}`,
);
await engine.close();
await rm(work, { recursive: true, force: true });
