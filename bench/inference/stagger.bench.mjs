// Time to first token of requests that arrive while others are generating: `--slots` requests `--stagger` ms apart
// on one model (the first ones generate while the later ones start), every round after the first on sequences that
// hold what the previous round left (so each request must erase that before its prompt is evaluated).
//
//   npx node bench/inference/stagger.bench.mjs [--size 128x2|512x4] [--slots 4] [--stagger 5] [--rounds 6] [--tokens 512]
//
// Prints one line: inference.stagger … first_token_ms_p50=… first_token_ms_max=… state_change_ms_max=…
// (the first round, on fresh sequences, is not counted). Before the state gate (state-gate.ts), the requests after
// the second waited in their state change until the first two had finished (128x2: ~750 ms, 512x4: ~4 s).
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { requireNode24 } from "./services.mjs";

requireNode24("bench/inference/stagger.bench.mjs");
const { ModelEntrySchema } = await import("@tokenmesh/catalog");
const { ChatRequest, Role } = await import("@tokenmesh/proto/common/v1/chat");
const { writeTestChatModel } = await import("@tokenmesh/testing/models");
const { LlamaContextSequence } = await import("node-llama-cpp");
const dist = new URL("../../services/inference/dist/", import.meta.url);
const { LocalEngine } = await import(new URL("engines/local/local-engine.js", dist).href);

const { values: args } = parseArgs({
  options: {
    size: { type: "string", default: "128x2" },
    slots: { type: "string", default: "4" },
    stagger: { type: "string", default: "5" },
    rounds: { type: "string", default: "6" },
    tokens: { type: "string", default: "512" },
  },
});
const slots = Number(args.slots);
const stagger = Number(args.stagger);
const rounds = Number(args.rounds);
const tokens = Number(args.tokens);
const m = /^(\d+)x(\d+)$/.exec(args.size);
if (!m) throw new Error(`--size must look like 128x2, got ${args.size}`);
const [dim, layers] = [Number(m[1]), Number(m[2])];

const work = await mkdtemp(join(tmpdir(), "tokenmesh-stagger-"));
const path = join(work, "model.gguf");
await writeTestChatModel(
  path,
  dim === 128 && layers === 2
    ? {}
    : {
        embeddingLength: dim,
        blockCount: layers,
        headCount: Math.max(2, dim / 64),
        headCountKv: Math.max(1, dim / 128),
        feedForwardLength: Math.round((dim * 2.75) / 64) * 64,
      },
);
const model = ModelEntrySchema.parse({
  id: "stagger",
  engine: "local",
  source: path,
  slots,
  queue_size: 64,
  max_output_tokens: tokens,
  context_window: 2048,
});
const quiet = { info() {}, warn() {}, error() {} };
const engine = new LocalEngine({ modelsDir: join(work, "cache"), logger: quiet });
await engine.load(model);

// How long each sequence's state change took (node-llama-cpp's adaptStateToTokens, which the engine calls).
const changes = [];
const adapt = LlamaContextSequence.prototype.adaptStateToTokens;
LlamaContextSequence.prototype.adaptStateToTokens = async function (...a) {
  const t = performance.now();
  try {
    return await adapt.apply(this, a);
  } finally {
    changes.push(performance.now() - t);
  }
};

async function stream(seed, t0) {
  const start = performance.now();
  let first;
  const request = ChatRequest.fromPartial({
    messages: [{ role: Role.ROLE_USER, content: "Write a long story." }],
    maxTokens: tokens,
    temperature: 0.8,
    seed,
  });
  const call = { requestId: `s${seed}`, model, request, signal: new AbortController().signal, priority: 0, tenant: "" };
  for await (const c of engine.generate(call)) {
    if (first === undefined && c.choices.some((d) => d.content)) first = performance.now() - start;
  }
  return { first, end: performance.now() - t0 };
}

const firsts = [];
let changeMax = 0;
for (let r = 0; r < rounds; r++) {
  changes.length = 0;
  const t0 = performance.now();
  const runs = [];
  for (let i = 0; i < slots; i++) {
    runs.push(stream(r * slots + i + 1, t0));
    if (stagger > 0 && i < slots - 1) await new Promise((resolve) => setTimeout(resolve, stagger));
  }
  const done = await Promise.all(runs);
  if (r === 0) continue; // fresh sequences: nothing to erase
  firsts.push(...done.map((d) => d.first));
  changeMax = Math.max(changeMax, ...changes);
}
await engine.close();
await rm(work, { recursive: true, force: true });

firsts.sort((a, b) => a - b);
const p50 = firsts[Math.floor((firsts.length - 1) / 2)];
console.log(
  `inference.stagger size=${args.size} slots=${slots} stagger_ms=${stagger} rounds=${rounds - 1} tokens=${tokens} ` +
    `first_token_ms_p50=${p50.toFixed(1)} first_token_ms_max=${firsts.at(-1).toFixed(1)} ` +
    `state_change_ms_max=${changeMax.toFixed(1)}`,
);
process.exit(0);
