// Output tokens/s of the raw LocalEngine in-process against the same model served by the inference service over
// real gRPC (a separate process), for 1 stream and for N concurrent streams. Prints ONE summary line.
// No tsx: it runs the compiled service (`npm run build -w @tokenmesh/inference` first). See README.md for flags.
//
//   node bench/inference/inference.bench.mjs [--size tiny] [--weights f32|q8_0] [--interval 25] [--slots 4] [--tokens 512] [--threads 0] [--runs 5]
//     [--model path.gguf] [--cases raw,svc] [--json]
//
// Method: both sides load the same GGUF with the same catalog entry (slots, threads, context). After one warm-up of
// every case, each case runs `--runs` times, interleaved raw/service so that background load on the machine hits
// both alike, and the median is reported. tokens/s = output tokens (from the final usage chunk) / wall time from
// the request's start to its last chunk; for N streams, the sum of output tokens / time from the common start to
// the last chunk of the last stream.
import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { ModelEntrySchema } from "@tokenmesh/catalog";
import { ChatRequest, Role } from "@tokenmesh/proto/common/v1/chat";
import { GenerateRequest, InferenceServiceClient } from "@tokenmesh/proto/inference/v1/inference";
import { callStream, createGrpcClient } from "@tokenmesh/runtime";
import { writeTestChatModel } from "@tokenmesh/testing/models";

const root = fileURLToPath(new URL("../../", import.meta.url));
const dist = new URL("../../services/inference/dist/", import.meta.url);
const { LocalEngine } = await import(new URL("engines/local/local-engine.js", dist).href);

const { values: args } = parseArgs({
  options: {
    model: { type: "string" },
    size: { type: "string", default: "tiny" },
    ff: { type: "string" },
    weights: { type: "string", default: "f32" },
    interval: { type: "string", default: "25" },
    slots: { type: "string", default: "4" },
    tokens: { type: "string", default: "512" },
    threads: { type: "string", default: "0" },
    runs: { type: "string", default: "5" },
    cases: { type: "string", default: "raw,svc" },
    json: { type: "boolean", default: false },
    "keep-service": { type: "boolean", default: false },
    "service-log": { type: "string" },
  },
});
const slots = int(args.slots, "slots");
const tokens = int(args.tokens, "tokens");
const threads = int(args.threads, "threads", 0);
const runs = int(args.runs, "runs");
const cases = new Set(args.cases.split(","));
const log = (msg) => process.stderr.write(`[bench] ${msg}\n`);

// --- model ---------------------------------------------------------------------------------------------------------

const work = await mkdtemp(join(tmpdir(), "tokenmesh-bench-"));
let modelPath = args.model;
let modelLabel;
if (modelPath === undefined) {
  if (args.weights !== "f32" && args.weights !== "q8_0") throw new Error("--weights is f32 or q8_0");
  const opts = { ...sizeOptions(args.size, args.ff), weightType: args.weights };
  modelLabel = `test-${opts.embeddingLength}x${opts.blockCount}-ff${opts.feedForwardLength}-${args.weights}`;
  modelPath = join(work, `${modelLabel}.gguf`);
  const t = performance.now();
  await writeTestChatModel(modelPath, opts);
  log(`generated ${modelLabel} (${JSON.stringify(opts)}) in ${(performance.now() - t).toFixed(0)} ms`);
} else {
  modelLabel = modelPath.split("/").at(-1);
}

const catalogEntry = {
  id: "bench",
  engine: "local",
  source: modelPath,
  slots,
  queue_size: 64,
  threads,
  max_output_tokens: tokens,
  context_window: 2048,
  stream_interval_ms: int(args.interval, "interval", 0),
};
const model = ModelEntrySchema.parse(catalogEntry);

function request(seed) {
  return ChatRequest.fromPartial({
    messages: [{ role: Role.ROLE_USER, content: "Write a long story." }],
    maxTokens: tokens,
    temperature: 0.8,
    seed,
  });
}

// --- raw engine (in-process) -----------------------------------------------------------------------------------------

let engine;
let device = "?";
if (cases.has("raw")) {
  engine = new LocalEngine({ modelsDir: join(work, "cache"), logger: quietLogger() });
  const t0 = performance.now();
  await engine.load(model);
  const status = engine.status(model);
  if (!status.ready) throw new Error(`model not ready: ${status.detail}`);
  device = status.device;
  log(`raw engine loaded in ${(performance.now() - t0).toFixed(0)} ms (device ${device})`);
}

async function rawStream(seed) {
  const start = performance.now();
  let out = 0;
  for await (const c of engine.generate({
    requestId: `raw-${seed}`,
    model,
    request: request(seed),
    signal: new AbortController().signal,
  })) {
    if (c.usage) out = c.usage.outputTokens;
  }
  return { out, end: performance.now(), start };
}

// --- service (separate process, real gRPC) ---------------------------------------------------------------------------

let service;
let client;
if (cases.has("svc")) {
  service = await startService();
  client = createGrpcClient(InferenceServiceClient, `127.0.0.1:${service.grpcPort}`);
}

async function svcStream(seed) {
  const start = performance.now();
  let out = 0;
  for await (const res of callStream(
    client.generate.bind(client),
    GenerateRequest.fromPartial({ model: "bench", request: request(seed), context: { requestId: `svc-${seed}` } }),
    { deadlineMs: 600_000 },
  )) {
    if (res.chunk?.usage) out = res.chunk.usage.outputTokens;
  }
  return { out, end: performance.now(), start };
}

async function startService() {
  const [grpcPort, opsPort] = [await freePort(), await freePort()];
  const meshPath = join(work, "mesh.yaml");
  await writeFile(meshPath, `models:\n  - ${JSON.stringify(catalogEntry)}\n`);
  const env = {
    ...process.env,
    INFERENCE_HOST: "127.0.0.1",
    INFERENCE_GRPC_PORT: String(grpcPort),
    INFERENCE_OPS_PORT: String(opsPort),
    MESH_CONFIG: meshPath,
    INFERENCE_MODELS_DIR: join(work, "cache"),
    LOG_LEVEL: process.env.LOG_LEVEL ?? "warn",
  };
  const t0 = performance.now();
  const child = spawn(
    process.execPath,
    ["--import", "@tokenmesh/telemetry/register", ...serviceNodeFlags(), "services/inference/dist/main.js"],
    { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  const keep = (b) => {
    output = (output + b.toString()).slice(-20_000);
  };
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  const deadline = Date.now() + 180_000;
  for (;;) {
    const done = await Promise.race([exited, sleep(250).then(() => undefined)]);
    if (done !== undefined) throw new Error(`service exited (${JSON.stringify(done)}) before ready:\n${output}`);
    try {
      const res = await fetch(`http://127.0.0.1:${opsPort}/readyz`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`service not ready after 180 s:\n${output}`);
    }
  }
  log(`service pid ${child.pid} ready in ${(performance.now() - t0).toFixed(0)} ms (grpc ${grpcPort}, ops ${opsPort})`);
  return {
    grpcPort,
    opsPort,
    output: () => output,
    /** Leaves the service running (for /metrics or a profile) and lets this process exit. */
    detach() {
      log(`service left running: pid ${child.pid}, ops http://127.0.0.1:${opsPort}/metrics (kill ${child.pid})`);
      child.stdout.destroy();
      child.stderr.destroy();
      child.unref();
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Extra node flags for the service (e.g. `--cpu-prof`), from BENCH_SERVICE_NODE_FLAGS. */
function serviceNodeFlags() {
  const flags = process.env.BENCH_SERVICE_NODE_FLAGS;
  return flags ? flags.split(/\s+/).filter(Boolean) : [];
}

// --- measurement -----------------------------------------------------------------------------------------------------

/** Aggregate output tokens/s of `n` concurrent streams started together. */
async function measure(stream, n, seedBase) {
  const start = performance.now();
  const results = await Promise.all(Array.from({ length: n }, (_, i) => stream(seedBase + i)));
  const total = results.reduce((a, r) => a + r.out, 0);
  if (results.some((r) => r.out !== tokens)) {
    log(`warning: streams produced ${results.map((r) => r.out).join(",")} tokens, expected ${tokens} each`);
  }
  const end = Math.max(...results.map((r) => r.end));
  return total / ((end - start) / 1000);
}

const plan = [];
for (const n of [1, slots]) {
  if (engine) plan.push({ name: `raw_${n}`, stream: rawStream, n });
  if (client) plan.push({ name: `svc_${n}`, stream: svcStream, n });
}
const samples = Object.fromEntries(plan.map((p) => [p.name, []]));

let exitCode = 0;
try {
  for (const p of plan) await measure(p.stream, p.n, 1000); // warm-up: code paths, KV buffers, gRPC channel
  for (let r = 0; r < runs; r++) {
    // Alternate which side goes first so drift in background load does not favour one side.
    const order = r % 2 === 0 ? plan : interleaveReversed(plan);
    for (const p of order) {
      const v = await measure(p.stream, p.n, 1 + r * slots);
      samples[p.name].push(v);
      log(`run ${r + 1}/${runs} ${p.name}=${v.toFixed(1)} tok/s`);
    }
  }
} catch (err) {
  exitCode = 1;
  log(`failed: ${err?.stack ?? err}`);
  if (service) log(`service output:\n${service.output()}`);
} finally {
  client?.close();
  if (args["service-log"] && service) await writeFile(args["service-log"], service.output());
  if (args["keep-service"]) service?.detach();
  else await service?.stop();
  await engine?.close();
  await rm(work, { recursive: true, force: true });
}
if (exitCode !== 0) process.exit(exitCode);

const med = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, median(v)]));
const n = slots;
const ratio = (a, b) => (a !== undefined && b !== undefined && b > 0 ? a / b : undefined);
const summary = {
  raw_1: med.raw_1,
  [`raw_${n}`]: med[`raw_${n}`],
  svc_1: med.svc_1,
  [`svc_${n}`]: med[`svc_${n}`],
  svc_vs_raw_1: ratio(med.svc_1, med.raw_1),
  [`svc_vs_raw_${n}`]: ratio(med[`svc_${n}`], med[`raw_${n}`]),
  batch_gain_raw: ratio(med[`raw_${n}`], med.raw_1),
  batch_gain_svc: ratio(med[`svc_${n}`], med.svc_1),
};
const fmt = (k, v) =>
  v === undefined ? undefined : `${k}=${k.includes("_vs_") || k.startsWith("batch") ? v.toFixed(2) : v.toFixed(0)}`;
const line = [
  "inference.bench",
  ...Object.entries(summary).map(([k, v]) => fmt(k, v)),
  `model=${modelLabel}`,
  `slots=${slots}`,
  `tokens=${tokens}`,
  `threads=${threads === 0 ? `auto(${Math.max(1, cpus().length - 1)})` : threads}`,
  `runs=${runs}`,
  `interval=${catalogEntry.stream_interval_ms}`,
  `device=${device}`,
  `load=${loadavg()[0].toFixed(1)}`,
]
  .filter(Boolean)
  .join(" ");
console.log(line);
if (args.json) console.log(JSON.stringify({ ...summary, model: modelLabel, slots, tokens, threads, runs, samples }));

// --- helpers ---------------------------------------------------------------------------------------------------------

/**
 * `--size DIMxLAYERS` (e.g. 512x4) → TestModelOptions; `tiny` is the writer's defaults (models/tiny-chat.gguf). Heads of 64 dims, 2 query heads per KV head, and a SwiGLU
 * hidden size of ~2.75× (Llama's ratio) unless `--ff` says otherwise.
 */
function sizeOptions(size, ff) {
  if (size === "tiny")
    return { embeddingLength: 128, blockCount: 2, headCount: 4, headCountKv: 2, feedForwardLength: 256 };
  const m = /^(\d+)x(\d+)$/.exec(size);
  if (!m) throw new Error(`--size must look like 512x4 (hidden size x layers), got ${size}`);
  const embeddingLength = Number(m[1]);
  const blockCount = Number(m[2]);
  const headCount = Math.max(2, Math.floor(embeddingLength / 64));
  if (embeddingLength % headCount !== 0) throw new Error(`--size: ${embeddingLength} is not a multiple of 64`);
  const feedForwardLength = ff ? Number(ff) : Math.round((embeddingLength * 2.75) / 64) * 64;
  return {
    embeddingLength,
    blockCount,
    headCount,
    headCountKv: headCount % 2 === 0 ? headCount / 2 : headCount,
    feedForwardLength,
    name: `tokenmesh-bench-${embeddingLength}x${blockCount}`,
  };
}

function interleaveReversed(p) {
  // Same case order by stream count, but the service goes before the raw engine.
  const out = [];
  for (let i = 0; i < p.length; i += 2) out.push(...p.slice(i, i + 2).reverse());
  return out;
}

function median(v) {
  if (v.length === 0) return undefined;
  const s = [...v].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

function int(v, name, min = 1) {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer ≥ ${min}, got ${v}`);
  return n;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

function quietLogger() {
  const warn = (obj, msg) => process.stderr.write(`[engine] ${msg ?? ""} ${JSON.stringify(obj)}\n`);
  return { info() {}, warn, error: warn };
}
