// Hedging benchmark: p99 time to first token through the router with and without `hedge`, against a fake OpenAI
// upstream where a random 10 % of requests wait before answering (a slow tail). Prints one summary line with the
// after/before p99 ratio. Starts its own nats-server and redis-server and runs the compiled router as a process.
//
//   npx tsc -p services/router/tsconfig.build.json && node bench/hedging/hedging.bench.mjs
//     [--requests 600] [--concurrency 8] [--tail 0.1] [--tail-ms 400] [--percentile 80] [--max 2]
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { ChatRequest } from "@tokenmesh/proto/common/v1/chat";
import { RouterServiceClient } from "@tokenmesh/proto/router/v1/router";
import { callStream, createGrpcClient } from "@tokenmesh/runtime";
import { freePort, spawnService, startFakeOpenAI, startNatsServer, startRedisServer } from "@tokenmesh/testing";

const { values: args } = parseArgs({
  options: {
    requests: { type: "string", default: "600" },
    concurrency: { type: "string", default: "8" },
    tail: { type: "string", default: "0.1" },
    "tail-ms": { type: "string", default: "400" },
    percentile: { type: "string", default: "80" },
    max: { type: "string", default: "2" },
  },
});
const N = Number(args.requests);
const CONCURRENCY = Number(args.concurrency);
const TAIL = Number(args.tail);
const TAIL_MS = Number(args["tail-ms"]);
const log = (...a) => process.stderr.write(`${a.join(" ")}\n`);
const serviceDir = new URL("../../services/router/", import.meta.url).pathname;

const tmp = await mkdtemp(join(tmpdir(), "tokenmesh-hedge-bench-"));
const upstream = await startFakeOpenAI({ record: false, behavior: { slowTail: { fraction: TAIL, delayMs: TAIL_MS } } });
const catalog = join(tmp, "mesh.yaml");
const model = (id, extra = "") =>
  `  - { id: ${id}, engine: openai, base_url: "${upstream.url}", upstream_model: up${extra} }`;
await writeFile(
  catalog,
  [
    "models:",
    model("plain"),
    model("hedged", `, hedge: { after_percentile: ${args.percentile}, after_ms: 50, max: ${args.max} }`),
    "",
  ].join("\n"),
);
const nats = await startNatsServer();
const redis = await startRedisServer();
const [grpcPort, opsPort] = [await freePort(), await freePort()];
const router = await spawnService({
  cmd: process.execPath,
  args: ["--import", "@tokenmesh/telemetry/register", "dist/main.js"],
  cwd: serviceDir,
  env: {
    NATS_URL: nats.url,
    REDIS_URL: redis.url,
    MESH_CONFIG: catalog,
    INFERENCE_ADDR: `127.0.0.1:${await freePort()}`,
    ROUTER_HOST: "127.0.0.1",
    ROUTER_GRPC_PORT: String(grpcPort),
    ROUTER_OPS_PORT: String(opsPort),
    LOG_LEVEL: "warn",
  },
  readyUrl: `http://127.0.0.1:${opsPort}/readyz`,
  name: "router",
});
const client = createGrpcClient(RouterServiceClient, `127.0.0.1:${grpcPort}`);

async function ttft(modelId, i) {
  const started = performance.now();
  let first;
  for await (const msg of callStream(client.route.bind(client), {
    context: { requestId: `bench-${modelId}-${i}`, keyId: "bench", team: "", user: "", priority: 0 },
    request: ChatRequest.fromPartial({
      model: modelId,
      stream: true,
      messages: [{ role: 2, content: "one two three" }],
    }),
  })) {
    if (msg.chunk && first === undefined) first = performance.now() - started;
  }
  return first;
}

async function run(modelId, n) {
  const out = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < n) out.push(await ttft(modelId, next++));
    }),
  );
  return out.sort((a, b) => a - b);
}
const pct = (sorted, p) => sorted[Math.ceil((p / 100) * sorted.length) - 1];

try {
  await run("plain", 50); // warm-up: connections, JIT
  const before = await run("plain", N);
  await run("hedged", 100); // the hedged model's TTFT statistics fill (and sync through Redis) here
  await new Promise((r) => setTimeout(r, 1_500));
  const after = await run("hedged", N);
  const [b99, a99] = [pct(before, 99), pct(after, 99)];
  log(`before: p50 ${pct(before, 50).toFixed(1)} ms, p99 ${b99.toFixed(1)} ms`);
  log(`after:  p50 ${pct(after, 50).toFixed(1)} ms, p99 ${a99.toFixed(1)} ms`);
  console.log(
    `hedging: ${N} requests x${CONCURRENCY}, ${Math.round(TAIL * 100)} % tail of ${TAIL_MS} ms, hedge after p${args.percentile} max ${args.max}: ` +
      `p99 TTFT ${b99.toFixed(1)} ms -> ${a99.toFixed(1)} ms, ratio ${(a99 / b99).toFixed(2)}x (target <= 0.5x)`,
  );
} finally {
  client.close();
  await router.stop();
  await upstream.close();
  await redis.stop?.();
  await nats.stop?.();
  await rm(tmp, { recursive: true, force: true });
}
