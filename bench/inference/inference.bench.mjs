// Output tokens/s of the raw LocalEngine in-process against the same model served by the inference service over
// real gRPC (a separate process, one hop), and through the whole mesh a client uses (gateway HTTP API → router →
// inference, with cost, NATS and Redis running), for 1 stream and for N concurrent streams. Prints ONE summary line.
// No tsx: it runs the compiled services (`npm run build` of the services first). See README.md for flags.
//
//   npx node bench/inference/inference.bench.mjs [--size tiny] [--weights f32|q8_0] [--interval 25] [--slots 4] [--tokens 512]
//     [--threads 0] [--runs 5] [--rounds 5] [--model path.gguf] [--cases raw,svc,mesh] [--json]
//
// Method: every side loads the same GGUF with the same catalog entry (slots, threads, context). After warm-up rounds
// of every case, each case runs `--runs` times, interleaved raw/svc/mesh so that background load on the machine hits
// all alike, and the median is reported; a run is `--rounds` measurements of every case, interleaved, and its
// figure per case their tokens over their time. tokens/s = output tokens (from the final usage chunk) / wall time
// from the request's start to its last chunk; for N streams, the sum of output tokens / time from the common start
// to the last chunk of the last stream.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { Agent, request as httpRequest } from "node:http";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { requireNode24, startNats, startRedis, startService } from "./services.mjs";

requireNode24("bench/inference/inference.bench.mjs");
// After the version check: the packages and the services' build need Node 24.
const { ModelEntrySchema } = await import("@tokenmesh/catalog");
const { ChatRequest, Role } = await import("@tokenmesh/proto/common/v1/chat");
const { GenerateRequest, InferenceServiceClient } = await import("@tokenmesh/proto/inference/v1/inference");
const { callStream, createGrpcClient } = await import("@tokenmesh/runtime");
const { writeTestChatModel } = await import("@tokenmesh/testing/models");
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
    rounds: { type: "string", default: "5" },
    warmup: { type: "string", default: "20" },
    cases: { type: "string", default: "raw,svc,mesh" },
    burn: { type: "string", default: "2/25" },
    cpus: { type: "string", default: "auto" },
    json: { type: "boolean", default: false },
    "keep-service": { type: "boolean", default: false },
    "service-log": { type: "string" },
  },
});
const slots = int(args.slots, "slots");
const tokens = int(args.tokens, "tokens");
const threads = int(args.threads, "threads", 0);
const runs = int(args.runs, "runs");
const rounds = int(args.rounds, "rounds");
const warmups = int(args.warmup, "warmup");
const cases = new Set(args.cases.split(","));
for (const c of cases)
  if (!["raw", "svc", "mesh", "burn"].includes(c)) throw new Error(`--cases: unknown case ${c} (raw, svc, mesh, burn)`);
// The CPUs the engine is kept on, on every side alike: the raw engine's process (this one, during raw runs) and the
// inference service (INFERENCE_CPU_AFFINITY), with the service's own helpers. "auto": the last CPU this process may
// use, when there are two or more (Linux; elsewhere none); "none": anywhere.
const { parseCpuList, pinToCpus } = await import(new URL("cpu-affinity.js", dist).href);
/** The CPUs this process may use, from /proc (Linux); undefined elsewhere. */
function ownCpus() {
  try {
    const list = /^Cpus_allowed_list:\s*(\S+)$/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1];
    return list === undefined ? undefined : parseCpuList(list);
  } catch {
    return undefined;
  }
}
const startCpus = args.cpus === "none" ? undefined : ownCpus();
const engineCpus =
  args.cpus === "none"
    ? undefined
    : args.cpus === "auto"
      ? startCpus !== undefined && startCpus.length > 1
        ? String(startCpus.at(-1))
        : undefined
      : args.cpus;
/**
 * Where everything else runs when the engine has its CPUs: this process (the clients of the svc and mesh cases) and
 * every process it starts (NATS, Redis, router, cost, gateway, the burner) keep to the other CPUs, as on a host that
 * gives the model server cores of its own (Kubernetes' static CPU manager, a compose `cpuset`). Raw runs move this
 * process onto the engine's CPUs and back.
 */
let otherCpus;
if (engineCpus !== undefined) {
  const engineSet = new Set(parseCpuList(engineCpus));
  const rest = (startCpus ?? []).filter((c) => !engineSet.has(c));
  otherCpus = (rest.length > 0 ? rest : (startCpus ?? [...engineSet])).join(",");
  pinToCpus(otherCpus);
}
/** Runs `fn` with this process (the raw engine's threads) on `--cpus`, as the inference service keeps itself. */
async function onEngineCpus(fn) {
  if (engineCpus === undefined) return fn();
  pinToCpus(engineCpus);
  try {
    return await fn();
  } finally {
    pinToCpus(otherCpus);
  }
}

const [burnMs, burnPeriodMs] = args.burn.split("/").map((x) => Number(x));
if (!(burnMs > 0 && burnPeriodMs > burnMs)) throw new Error("--burn is BUSY_MS/PERIOD_MS, e.g. 2/25");
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
const PROMPT = "Write a long story.";

function request(seed) {
  return ChatRequest.fromPartial({
    messages: [{ role: Role.ROLE_USER, content: PROMPT }],
    maxTokens: tokens,
    temperature: 0.8,
    seed,
  });
}

// --- raw engine (in-process) -----------------------------------------------------------------------------------------

let engine;
let device = "?";
if (cases.has("raw") || cases.has("burn")) {
  engine = new LocalEngine({ modelsDir: join(work, "cache"), logger: quietLogger() });
  const t0 = performance.now();
  // Loaded on the CPUs it runs on: the engine sizes its thread count by the CPUs it may use, as the service's does.
  await onEngineCpus(() => engine.load(model));
  const status = engine.status(model);
  if (!status.ready) throw new Error(`model not ready: ${status.detail}`);
  device = status.device;
  log(`raw engine loaded in ${(performance.now() - t0).toFixed(0)} ms (device ${device})`);
}

async function rawStream(seed) {
  const start = performance.now();
  let first;
  let out = 0;
  for await (const c of engine.generate({
    requestId: `raw-${seed}`,
    model,
    request: request(seed),
    signal: new AbortController().signal,
  })) {
    first ??= performance.now();
    if (c.usage) out = c.usage.outputTokens;
  }
  return { out, end: performance.now(), start, first };
}

// --- raw engine next to a process that burns CPU ---------------------------------------------------------------------

/**
 * A separate process that spins `burnMs` of every `burnPeriodMs` while switched on: as much CPU, in as many
 * wake-ups, as the mesh's other processes spend while they relay a stream (see README.md). It is started once and
 * switched on and off around each `burn` measurement, so its start-up is not measured.
 */
let burner;
async function startBurner() {
  burner = spawn(
    process.execPath,
    [
      "-e",
      `let timer;
       const burn = () => { const t = performance.now(); while (performance.now() - t < ${burnMs}); };
       process.on("message", (m) => {
         clearInterval(timer);
         if (m === "on") timer = setInterval(burn, ${burnPeriodMs});
         process.send("ok");
       });
       process.send("ok");`,
    ],
    { stdio: ["ignore", "ignore", "inherit", "ipc"] },
  );
  await once(burner, "message");
}
async function switchBurner(on) {
  burner.send(on ? "on" : "off");
  await once(burner, "message");
}

async function burnStream(seed) {
  await switchBurner(true);
  try {
    return await rawStream(seed);
  } finally {
    await switchBurner(false);
  }
}

// --- service (separate process, real gRPC) ---------------------------------------------------------------------------

/** Every child process, in start order (stopped in reverse). */
const procs = [];
const nodeFlags = serviceNodeFlags();
const logDir = join(work, "logs");
let inference;
let client;
let mesh;

/** Starts the processes the svc and mesh cases need (`procs` holds what started, for the cleanup). */
async function startProcesses() {
  if (cases.has("burn")) await startBurner();
  if (cases.has("svc") || cases.has("mesh")) await startInference();
  if (cases.has("svc")) client = createGrpcClient(InferenceServiceClient, inference.addr);
  if (cases.has("mesh")) await startMesh();
}

async function startInference() {
  // One inference process serves both the svc case (called directly) and the mesh case (called by the router).
  const meshPath = join(work, "mesh.yaml");
  await writeFile(meshPath, `models:\n  - ${JSON.stringify(catalogEntry)}\n`);
  inference = await startService("inference", {
    logDir,
    env: {
      MESH_CONFIG: meshPath,
      INFERENCE_MODELS_DIR: join(work, "cache"),
      ...(engineCpus === undefined ? {} : { INFERENCE_CPU_AFFINITY: engineCpus }),
    },
    nodeFlags,
  });
  procs.push(inference);
  log(`inference pid ${inference.pid} ready in ${inference.readyMs.toFixed(0)} ms (grpc ${inference.grpcPort})`);
}

async function svcStream(seed) {
  const start = performance.now();
  let first;
  let out = 0;
  for await (const res of callStream(
    client.generate.bind(client),
    GenerateRequest.fromPartial({ model: "bench", request: request(seed), context: { requestId: `svc-${seed}` } }),
    { deadlineMs: 600_000 },
  )) {
    first ??= performance.now();
    if (res.chunk?.usage) out = res.chunk.usage.outputTokens;
  }
  return { out, end: performance.now(), start, first };
}

// --- mesh (gateway HTTP API → router → inference; cost, NATS, Redis) -------------------------------------------------

async function startMesh() {
  const t0 = performance.now();
  const nats = await startNats(join(work, "nats"), logDir);
  procs.push(nats);
  const redis = await startRedis(logDir);
  procs.push(redis);
  const adminKey = "bench-admin-key-0123456789";
  const env = {
    NATS_URL: nats.url,
    REDIS_URL: redis.url,
    MESH_CONFIG: join(work, "mesh.yaml"),
    TOKENMESH_ADMIN_KEY: adminKey,
    INFERENCE_ADDR: inference.addr,
  };
  const router = await startService("router", { logDir, env, nodeFlags });
  procs.push(router);
  const cost = await startService("cost", { logDir, env, nodeFlags });
  procs.push(cost);
  const gateway = await startService("gateway", {
    logDir,
    env: { ...env, ROUTER_ADDR: router.addr, COST_ADDR: cost.addr },
    nodeFlags,
    opsPortVar: "GATEWAY_HTTP_PORT",
  });
  procs.push(gateway);
  const base = `http://127.0.0.1:${gateway.opsPort}`;
  const res = await fetch(`${base}/admin/keys`, {
    method: "POST",
    headers: { authorization: `Bearer ${adminKey}`, "content-type": "application/json" },
    body: JSON.stringify({ name: "inference-bench" }),
  });
  if (!res.ok) throw new Error(`POST /admin/keys: ${res.status} ${await res.text()}`);
  const { key } = await res.json();
  // node:http with kept-alive connections, not fetch: undici's fetch cost this client 3–4 ms more per request on the
  // 2-vCPU VM (first chunk of a 1-token stream, 300 ms apart: 15–17 ms against 12 ms), time the raw case never
  // pays and that is not the mesh's. The gateway bench drives the gateway with wrk, a C client, for the same reason.
  mesh = { url: new URL(`${base}/v1/chat/completions`), key, agent: new Agent({ keepAlive: true }) };
  log(
    `mesh ready in ${(performance.now() - t0).toFixed(0)} ms: ` +
      procs.map((p) => `${p.name} pid ${p.pid}`).join(", ") +
      `; gateway ${base}`,
  );
}

/** POSTs `body` (JSON) to the gateway; resolves with the response once its headers are in. */
function post(url, key, body) {
  return new Promise((resolve, reject) => {
    const bytes = Buffer.from(JSON.stringify(body));
    const req = httpRequest(
      url,
      {
        method: "POST",
        agent: mesh.agent,
        headers: {
          authorization: `Bearer ${key}`,
          "content-type": "application/json",
          "content-length": bytes.length,
        },
      },
      resolve,
    );
    req.on("error", reject);
    req.end(bytes);
  });
}

/** One streamed chat completion through the gateway, as an OpenAI client sends it. */
async function meshStream(seed) {
  const start = performance.now();
  const res = await post(mesh.url, mesh.key, {
    model: "bench",
    messages: [{ role: "user", content: PROMPT }],
    max_tokens: tokens,
    temperature: 0.8,
    seed,
    stream: true,
    stream_options: { include_usage: true },
    metadata: { cache: "no" },
  });
  if (res.statusCode !== 200) {
    let text = "";
    for await (const b of res) text += b;
    throw new Error(`mesh: HTTP ${res.statusCode}: ${text}`);
  }
  const decoder = new TextDecoder();
  let buf = "";
  let out = 0;
  let done = false;
  let first;
  for await (const bytes of res) {
    first ??= performance.now();
    buf += decoder.decode(bytes, { stream: true });
    for (let i = buf.indexOf("\n\n"); i >= 0; i = buf.indexOf("\n\n")) {
      const event = buf.slice(0, i);
      buf = buf.slice(i + 2);
      // Text inside a delta is JSON-escaped, so these markers only match the envelope.
      if (event === "data: [DONE]") done = true;
      else if (event.startsWith('data: {"error"')) throw new Error(`mesh: stream failed: ${event}`);
      else if (event.includes('"usage":{')) out = JSON.parse(event.slice("data: ".length)).usage.completion_tokens;
    }
  }
  if (!done) throw new Error("mesh: stream ended without [DONE]");
  return { out, end: performance.now(), start, first };
}

/** Extra node flags for the services (e.g. `--cpu-prof`), from BENCH_SERVICE_NODE_FLAGS. */
function serviceNodeFlags() {
  const flags = process.env.BENCH_SERVICE_NODE_FLAGS;
  return flags ? flags.split(/\s+/).filter(Boolean) : [];
}

// --- measurement -----------------------------------------------------------------------------------------------------

/**
 * `n` concurrent streams started together: their output tokens, the time from the common start to the last stream's
 * last chunk, and when the last of them got its first chunk (ms after the start: the mesh's admission and relaying
 * of the streams' beginnings, which the engine's generation does not overlap).
 */
async function measure(stream, n, seedBase) {
  const start = performance.now();
  const results = await Promise.all(Array.from({ length: n }, (_, i) => stream(seedBase + i)));
  const total = results.reduce((a, r) => a + r.out, 0);
  if (results.some((r) => r.out !== tokens)) {
    log(`warning: streams produced ${results.map((r) => r.out).join(",")} tokens, expected ${tokens} each`);
  }
  const end = Math.max(...results.map((r) => r.end));
  return { tokens: total, ms: end - start, firstMs: Math.max(...results.map((r) => r.first - start)) };
}

/** A case's measure; the engine in this process runs on `--cpus` (the service keeps itself there). */
function measureCase(p, seedBase) {
  return p.inProcess ? onEngineCpus(() => measure(p.stream, p.n, seedBase)) : measure(p.stream, p.n, seedBase);
}

const samples = {};
/** Per case, when the last of its streams got its first chunk (ms), every measured round. */
const firstChunks = {};
let exitCode = 0;
try {
  await startProcesses();
  /** One group of cases per stream count, in the order raw, svc, mesh. */
  const groups = [...new Set([1, slots])].map((n) =>
    [
      cases.has("raw") && { name: `raw_${n}`, stream: rawStream, n, inProcess: true },
      // 1 stream only: how much a little CPU spent elsewhere on the machine slows one stream of the raw engine.
      cases.has("burn") && n === 1 && { name: `burn_${n}`, stream: burnStream, n, inProcess: true },
      cases.has("svc") && { name: `svc_${n}`, stream: svcStream, n },
      cases.has("mesh") && { name: `mesh_${n}`, stream: meshStream, n },
    ].filter(Boolean),
  );
  const plan = groups.flat();
  for (const p of plan) {
    samples[p.name] = [];
    firstChunks[p.name] = [];
  }
  // Warm-up of every case alike: code paths (V8 optimises a function only after many calls: one request leaves the
  // mesh's request path interpreted, several ms per request), KV buffers, channels, connections.
  for (let w = 0; w < warmups; w++) for (const p of plan) await measureCase(p, 1000 + w * slots);
  log(`warmed up: ${warmups} round(s) of every case`);
  for (let r = 0; r < runs; r++) {
    // A run is `rounds` rounds of every case; the engine's own speed on this VM moves by ±20 % from one second to
    // the next, so one ~0.5 s measurement per case and run left the median of five at the mercy of that.
    const sums = Object.fromEntries(plan.map((p) => [p.name, { tokens: 0, ms: 0 }]));
    for (let k = 0; k < rounds; k++) {
      // Alternate the order within each stream count (raw, svc, mesh / mesh, svc, raw) so that drift in background
      // load does not favour one side.
      const order = (r * rounds + k) % 2 === 0 ? plan : groups.flatMap((g) => [...g].reverse());
      for (const p of order) {
        const m = await measureCase(p, 1 + (r * rounds + k) * slots);
        sums[p.name].tokens += m.tokens;
        sums[p.name].ms += m.ms;
        firstChunks[p.name].push(m.firstMs);
      }
    }
    for (const p of plan) {
      const v = sums[p.name].tokens / (sums[p.name].ms / 1000);
      samples[p.name].push(v);
      log(`run ${r + 1}/${runs} ${p.name}=${v.toFixed(1)} tok/s`);
    }
  }
} catch (err) {
  exitCode = 1;
  log(`failed: ${err?.stack ?? err}`);
  for (const p of procs) log(`${p.name} output (tail):\n${p.output()}`);
} finally {
  burner?.kill();
  client?.close();
  mesh?.agent.destroy();
  if (args["service-log"] && procs.length > 0) {
    await writeFile(
      args["service-log"],
      procs.map((p) => `==> ${p.name} (pid ${p.pid}) <==\n${p.output()}\n`).join(""),
    );
  }
  const keep = args["keep-service"] && procs.length > 0;
  if (keep) {
    for (const p of procs) {
      p.detach();
      log(`${p.name} left running: pid ${p.pid}${p.opsPort ? `, http://127.0.0.1:${p.opsPort}/metrics` : ""}`);
    }
    // The running processes use it (model file, NATS store, logs).
    log(`work dir kept: ${work} (logs in ${logDir}); remove it after stopping them`);
  } else {
    for (const p of [...procs].reverse()) await p.stop();
  }
  await engine?.close();
  if (!keep) await rm(work, { recursive: true, force: true });
}
if (exitCode !== 0) process.exit(exitCode);

const med = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, median(v)]));
const n = slots;
const ratio = (a, b) => (a !== undefined && b !== undefined && b > 0 ? a / b : undefined);
/**
 * The median over runs of case `a`'s figure divided by case `b`'s in the same run (measured minutes apart at most):
 * the VM's speed, which drifts by more than the 5 % compared here over a bench's few minutes, cancels within a run.
 */
const paired = (a, b) =>
  samples[a]?.length > 0 && samples[b]?.length === samples[a].length
    ? median(samples[a].map((v, i) => v / samples[b][i]))
    : undefined;
const summary = {
  raw_1: med.raw_1,
  [`raw_${n}`]: med[`raw_${n}`],
  svc_1: med.svc_1,
  [`svc_${n}`]: med[`svc_${n}`],
  mesh_1: med.mesh_1,
  [`mesh_${n}`]: med[`mesh_${n}`],
  svc_vs_raw_1: ratio(med.svc_1, med.raw_1),
  [`svc_vs_raw_${n}`]: ratio(med[`svc_${n}`], med[`raw_${n}`]),
  mesh_vs_raw_1: ratio(med.mesh_1, med.raw_1),
  [`mesh_vs_raw_${n}`]: ratio(med[`mesh_${n}`], med[`raw_${n}`]),
  paired_svc_vs_raw_1: paired("svc_1", "raw_1"),
  [`paired_svc_vs_raw_${n}`]: paired(`svc_${n}`, `raw_${n}`),
  paired_mesh_vs_raw_1: paired("mesh_1", "raw_1"),
  [`paired_mesh_vs_raw_${n}`]: paired(`mesh_${n}`, `raw_${n}`),
  batch_gain_raw: ratio(med[`raw_${n}`], med.raw_1),
  batch_gain_svc: ratio(med[`svc_${n}`], med.svc_1),
  burn_1: med.burn_1,
  burn_vs_raw_1: ratio(med.burn_1, med.raw_1),
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
  `rounds=${rounds}`,
  `first_chunk_ms=${Object.entries(firstChunks)
    .map(([k, v]) => `${k}:${median(v).toFixed(1)}`)
    .join("/")}`,
  `interval=${catalogEntry.stream_interval_ms}`,
  cases.has("burn") && `burn=${burnMs}/${burnPeriodMs}`,
  `cpus=${engineCpus === undefined ? "none" : `${engineCpus}/${otherCpus}`}`,
  `device=${device}`,
  `load=${loadavg()[0].toFixed(1)}`,
]
  .filter(Boolean)
  .join(" ");
console.log(line);
if (args.json) {
  const out = { ...summary, model: modelLabel, slots, tokens, threads, runs, rounds, samples, firstChunks };
  console.log(JSON.stringify(out));
}

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

function quietLogger() {
  const warn = (obj, msg) => process.stderr.write(`[engine] ${msg ?? ""} ${JSON.stringify(obj)}\n`);
  return { info() {}, warn, error: warn };
}
