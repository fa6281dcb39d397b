// Cost service benchmark: usage events per second that ONE cost replica prices and records exactly once, and the
// time from a usage event to its budget threshold alert (p50, p99). Prints one summary line.
// Starts its own nats-server and redis-server and runs the compiled service as a real process.
//
//   npm run build -w @tokenmesh/cost && node bench/cost/cost.bench.mjs [--events 50000] [--probes 500]
//     [--probe-rate 200] [--background-rate 2000]
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { credentials } from "@grpc/grpc-js";
import { connect } from "@nats-io/transport-node";
import {
  BudgetThresholdEvent,
  decodeEvent,
  encodeEvent,
  ensureStreams,
  jetstream,
  jetstreamManager,
  UsageRecordedEvent,
} from "@tokenmesh/events";
import { CostServiceClient, Period, Scope } from "@tokenmesh/proto/cost/v1/cost";
import { freePort, spawnService, startNatsServer, startRedisServer } from "@tokenmesh/testing";
import { Redis } from "ioredis";

const { values: args } = parseArgs({
  options: {
    events: { type: "string", default: "50000" },
    probes: { type: "string", default: "500" },
    "probe-rate": { type: "string", default: "200" },
    "background-rate": { type: "string", default: "2000" },
  },
});
const EVENTS = Number(args.events);
const PROBES = Number(args.probes);
const PROBE_RATE = Number(args["probe-rate"]);
const BG_RATE = Number(args["background-rate"]);
const MODEL = "bench-model";
const PRICE = { in: 0.15, out: 0.6 };
const serviceDir = new URL("../../services/cost/", import.meta.url).pathname;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => process.stderr.write(`${a.join(" ")}\n`);

const tmp = await mkdtemp(join(tmpdir(), "tokenmesh-cost-bench-"));
const catalog = join(tmp, "mesh.yaml");
await writeFile(
  catalog,
  `models:\n  - id: ${MODEL}\n    engine: openai\n    base_url: http://127.0.0.1:9/v1\n    upstream_model: x\n` +
    `    price: { input_per_mtok: ${PRICE.in}, output_per_mtok: ${PRICE.out} }\n`,
);
const nats = await startNatsServer();
const redisServer = await startRedisServer();
const redis = new Redis(redisServer.url);
const nc = await connect({ servers: nats.url });
const jsm = await jetstreamManager(nc);
await ensureStreams(jsm, ["LLM_USAGE", "LLM_BUDGET", "LLM_DEADLETTER"]);
const js = jetstream(nc);

let service;
let grpcPort = 0;
async function startCost() {
  grpcPort = await freePort();
  const opsPort = await freePort();
  service = await spawnService({
    cmd: process.execPath,
    args: ["--import", "@tokenmesh/telemetry/register", "dist/main.js"],
    cwd: serviceDir,
    env: {
      NATS_URL: nats.url,
      REDIS_URL: redisServer.url,
      MESH_CONFIG: catalog,
      COST_HOST: "127.0.0.1",
      COST_GRPC_PORT: String(grpcPort),
      COST_OPS_PORT: String(opsPort),
      LOG_LEVEL: "warn",
    },
    readyUrl: `http://127.0.0.1:${opsPort}/readyz`,
    name: "cost",
  });
}

function usage(requestId, fields = {}) {
  return {
    requestId,
    timestamp: new Date().toISOString(),
    keyId: "bench-key",
    team: "bench-team",
    user: "",
    modelRequested: MODEL,
    model: MODEL,
    provider: "bench",
    inputTokens: 1000,
    outputTokens: 200,
    cachedTokens: 0,
    cacheHit: false,
    status: "ok",
    errorCode: "",
    latencyMs: 100,
    ttftMs: 10,
    traceId: "",
    endpoint: "chat",
    stream: false,
    reservationId: "",
    ...fields,
  };
}

async function publishAll(messages, window = 2000) {
  const inFlight = new Set();
  for (const [event, msgID] of messages) {
    const p = js.publish(UsageRecordedEvent.subject, encodeEvent(UsageRecordedEvent, event), { msgID });
    inFlight.add(p);
    p.finally(() => inFlight.delete(p));
    if (inFlight.size >= window) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
}

const day = new Date().toISOString().slice(0, 10);
const countKey = `cost:u:model:${MODEL}:${day}`;
const recorded = async () => Number((await redis.hget(countKey, `${MODEL}|r`)) ?? 0);

try {
  // Phase 1: throughput. Start the service once so its durable consumer exists, stop it, fill the stream with the
  // events plus 10 % duplicates (stored under other Nats-Msg-Ids), then start it and time the drain.
  await startCost();
  await service.stop();
  const messages = [];
  for (let i = 0; i < EVENTS; i++) {
    const ev = usage(`tp-${i}`, { inputTokens: 500 + (i % 1000), outputTokens: i % 300 });
    messages.push([ev, ev.requestId]);
    if (i % 10 === 0) messages.push([ev, `${ev.requestId}:dup`]);
  }
  log(`publishing ${messages.length} usage events (${EVENTS} unique)…`);
  await publishAll(messages);
  let expectedNano = 0;
  for (let i = 0; i < EVENTS; i++) {
    expectedNano += Math.round(((500 + (i % 1000)) * PRICE.in + (i % 300) * PRICE.out) * 1000);
  }

  await startCost();
  let first = 0;
  let firstCount = 0;
  let last = 0;
  for (;;) {
    const n = await recorded();
    const t = performance.now();
    if (n > 0 && first === 0) {
      first = t;
      firstCount = n;
    }
    if (n >= EVENTS) {
      last = t;
      break;
    }
    await sleep(5);
  }
  const rate = ((EVENTS - firstCount) / (last - first)) * 1000;
  await sleep(1000); // let late duplicates arrive: they must not count
  const finalCount = await recorded();
  const costNano = Number(await redis.hget(countKey, `${MODEL}|c`));
  const exact = finalCount === EVENTS && costNano === expectedNano;
  log(
    `recorded ${finalCount}/${EVENTS}, cost ${costNano} nano (expected ${expectedNano}), ${rate.toFixed(0)} events/s`,
  );

  // Phase 2: alert latency. One soft day budget per probe key, so that each probe event crosses its 100 %
  // threshold; probes are sent at PROBE_RATE over a background load of BG_RATE events/s.
  const client = new CostServiceClient(`127.0.0.1:${grpcPort}`, credentials.createInsecure());
  const setBudget = (id) =>
    new Promise((resolve, reject) =>
      client.setBudget(
        {
          budget: {
            scope: Scope.SCOPE_KEY,
            id,
            period: Period.PERIOD_DAY,
            limitUsd: 0.0001,
            hard: false,
            thresholds: [1],
          },
        },
        (err, res) => (err ? reject(err) : resolve(res)),
      ),
    );
  for (let i = 0; i < PROBES; i += 50) {
    await Promise.all(Array.from({ length: Math.min(50, PROBES - i) }, (_, j) => setBudget(`probe-${i + j}`)));
  }
  const sentAt = new Map();
  const latencies = [];
  const sub = nc.subscribe(BudgetThresholdEvent.subject);
  void (async () => {
    for await (const m of sub) {
      const a = decodeEvent(BudgetThresholdEvent, m.data);
      const t0 = sentAt.get(a.id);
      if (t0 !== undefined) {
        latencies.push(performance.now() - t0);
        sentAt.delete(a.id);
      }
    }
  })();
  let bgStop = false;
  let bgSent = 0;
  const background = (async () => {
    const started = performance.now();
    while (!bgStop) {
      const due = Math.floor(((performance.now() - started) / 1000) * BG_RATE);
      const batch = [];
      for (; bgSent < due; bgSent++) batch.push([usage(`bg-${bgSent}`), `bg-${bgSent}`]);
      if (batch.length > 0) await publishAll(batch, 500);
      await sleep(5);
    }
  })();
  const probeStart = performance.now();
  for (let i = 0; i < PROBES; i++) {
    const due = probeStart + (i * 1000) / PROBE_RATE;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    const id = `probe-${i}`;
    sentAt.set(id, performance.now());
    void js.publish(UsageRecordedEvent.subject, encodeEvent(UsageRecordedEvent, usage(`probe-r${i}`, { keyId: id })), {
      msgID: `probe-r${i}`,
    });
  }
  const until = Date.now() + 10_000;
  while (latencies.length < PROBES && Date.now() < until) await sleep(20);
  bgStop = true;
  await background;
  client.close();
  sub.unsubscribe();
  latencies.sort((a, b) => a - b);
  const pct = (p) =>
    latencies[Math.min(latencies.length - 1, Math.ceil((p / 100) * latencies.length) - 1)] ?? Number.NaN;
  console.log(
    `cost: ${rate.toFixed(0)} usage events/s recorded by 1 replica (${EVENTS} events + 10 % duplicates, ` +
      `exactly-once ${exact ? "ok" : "FAILED"}); usage→alert p50 ${pct(50).toFixed(1)} ms p99 ${pct(99).toFixed(1)} ms ` +
      `(${latencies.length}/${PROBES} alerts at ${PROBE_RATE}/s over ${BG_RATE} events/s background)`,
  );
  if (!exact || latencies.length < PROBES) process.exitCode = 1;
} finally {
  await service?.stop();
  await nc.drain().catch(() => undefined);
  redis.disconnect();
  await redisServer.stop();
  await nats.stop();
  await rm(tmp, { recursive: true, force: true });
}
