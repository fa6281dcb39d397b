#!/usr/bin/env node
// Soak: the whole mesh under a steady mixed load for a set time, each service's memory and handles sampled from its
// /metrics, then one summary line with their start, end and slope. Target: flat. See README.md.
//
//   node bench/soak/run.mjs [--minutes 20] [--rps 20] [--sample 10] [--warmup 120] [--window 60] [--out samples.json]
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { freePort, spawnService, startFakeOpenAI, startNatsServer, startRedisServer } from "@tokenmesh/testing";
import { makeTestModels } from "@tokenmesh/testing/models";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
if (Number(process.versions.node.split(".")[0]) < 24) {
  console.error(`Node ${process.version}: run with the project's Node 24 (npx node bench/soak/run.mjs ...)`);
  process.exit(2);
}
const { values: opts } = parseArgs({
  options: {
    minutes: { type: "string", default: "20" },
    rps: { type: "string", default: "20" },
    sample: { type: "string", default: "10" },
    warmup: { type: "string", default: "120" },
    window: { type: "string", default: "60" },
    out: { type: "string" },
  },
});
const minutes = Number(opts.minutes);
const rps = Number(opts.rps);
const sampleS = Number(opts.sample);
const warmupS = Number(opts.warmup);
const windowS = Number(opts.window);
const SERVICES = ["gateway", "router", "inference", "guard", "cost"];
/** The default Node process metrics every service exports (prom-client's, under the `tokenmesh_` prefix). */
const METRICS = {
  rss: "tokenmesh_process_resident_memory_bytes",
  heap: "tokenmesh_nodejs_heap_size_used_bytes",
  handles: "tokenmesh_nodejs_active_handles_total",
};

const dir = mkdtempSync(join(tmpdir(), "tokenmesh-soak-"));
const cleanups = [];
const cleanup = async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn().catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });
};
process.on("SIGINT", () => void cleanup().then(() => process.exit(130)));

try {
  const [nats, redis, upstream] = await Promise.all([
    startNatsServer(),
    startRedisServer(),
    startFakeOpenAI({ apiKey: "sk-fake", record: false }),
  ]);
  cleanups.push(
    () => nats.stop(),
    () => redis.stop(),
    () => upstream.close(),
  );
  const models = await makeTestModels(dir);
  writeFileSync(
    join(dir, "mesh.yaml"),
    `models:
  - { id: local-tiny, engine: local, source: ${models.chat}, context_window: 2048, max_output_tokens: 64, slots: 4,
      price: { input_per_mtok: 0, output_per_mtok: 0 } }
  - { id: gpt-fake, engine: openai, base_url: ${upstream.url}, api_key_env: FAKE_OPENAI_KEY, upstream_model: gpt-4o-mini,
      price: { input_per_mtok: 0.15, output_per_mtok: 0.6 } }
routes:
  cache: { enabled: true, ttl_s: 60 }
`,
  );
  const ports = {};
  for (const s of SERVICES) ports[s] = { grpc: await freePort(), ops: await freePort() };
  const adminKey = "soak-admin-key-0123456789abcdef";
  const env = {
    NATS_URL: nats.url,
    REDIS_URL: redis.url,
    MESH_CONFIG: join(dir, "mesh.yaml"),
    LOG_LEVEL: "warn",
    FAKE_OPENAI_KEY: "sk-fake",
    TOKENMESH_ADMIN_KEY: adminKey,
    INFERENCE_ADDR: `127.0.0.1:${ports.inference.grpc}`,
    GUARD_ADDR: `127.0.0.1:${ports.guard.grpc}`,
    ROUTER_ADDR: `127.0.0.1:${ports.router.grpc}`,
    COST_ADDR: `127.0.0.1:${ports.cost.grpc}`,
  };
  const ops = {};
  // The router needs inference; the gateway needs the rest. The gateway's ops port is its HTTP port.
  for (const group of [["inference", "guard", "cost"], ["router"], ["gateway"]]) {
    await Promise.all(
      group.map(async (s) => {
        const upper = s.toUpperCase();
        const own =
          s === "gateway"
            ? { GATEWAY_GRPC_PORT: String(ports.gateway.grpc), GATEWAY_HTTP_PORT: String(ports.gateway.ops) }
            : { [`${upper}_GRPC_PORT`]: String(ports[s].grpc), [`${upper}_OPS_PORT`]: String(ports[s].ops) };
        ops[s] = `http://127.0.0.1:${ports[s].ops}`;
        const p = await spawnService({
          name: s,
          cmd: process.execPath,
          args: ["--import", "@tokenmesh/telemetry/register", "dist/main.js"],
          cwd: join(root, "services", s),
          env: { ...env, ...own },
          readyUrl: `${ops[s]}/readyz`,
          readyTimeoutMs: 60_000,
        });
        cleanups.push(() => p.stop());
      }),
    );
  }
  const gateway = ops.gateway;
  const admin = { authorization: `Bearer ${adminKey}`, "content-type": "application/json" };
  const created = await fetch(`${gateway}/admin/keys`, {
    method: "POST",
    headers: admin,
    body: JSON.stringify({ name: "soak" }),
  });
  const key = await created.json();
  // A hard budget, so every request also takes and settles a reservation.
  await fetch(`${gateway}/admin/budgets`, {
    method: "PUT",
    headers: admin,
    body: JSON.stringify({ scope: "key", id: key.id, period: "day", limitUsd: 1000, hard: true }),
  });

  // The load: remote and local chat, streamed and not; one request in ten repeats a prompt (a cache hit).
  const tally = { ok: 0, failed: 0 };
  const kinds = [
    { model: "gpt-fake", stream: false },
    { model: "gpt-fake", stream: true },
    { model: "local-tiny", stream: false, max_tokens: 8 },
    { model: "local-tiny", stream: true, max_tokens: 8 },
  ];
  const inFlight = new Set();
  let sent = 0;
  const send = (seq) => {
    const k = kinds[seq % kinds.length];
    const marker = seq % 10 === 0 ? "again" : `s${seq}`;
    const p = fetch(`${gateway}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key.key}`, "content-type": "application/json" },
      body: JSON.stringify({
        model: k.model,
        messages: [{ role: "user", content: `${marker} apple beach cloud delta eagle frost grape house` }],
        ...(k.max_tokens ? { max_tokens: k.max_tokens } : {}),
        ...(k.stream ? { stream: true, stream_options: { include_usage: true } } : {}),
      }),
      signal: AbortSignal.timeout(30_000),
    })
      .then(async (res) => {
        const text = await res.text();
        if (res.status === 200 && (!k.stream || text.includes("data: [DONE]"))) tally.ok++;
        else tally.failed++;
      })
      .catch(() => {
        tally.failed++;
      })
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
  };
  const startedAt = performance.now();
  const pacer = setInterval(() => {
    const due = Math.floor(((performance.now() - startedAt) * rps) / 1000);
    while (sent < due) send(sent++);
  }, 5);

  const samples = [];
  const sample = async () => {
    const t = (performance.now() - startedAt) / 1000;
    const row = { t, services: {} };
    for (const s of SERVICES) {
      const text = await (await fetch(`${ops[s]}/metrics`)).text();
      row.services[s] = Object.fromEntries(Object.entries(METRICS).map(([k, name]) => [k, metric(text, name)]));
    }
    samples.push(row);
  };
  const endAt = startedAt + minutes * 60_000;
  process.stderr.write(`soak: ${minutes} min at ${rps} rps, sampling every ${sampleS} s after ${warmupS} s\n`);
  while (performance.now() < endAt) {
    await new Promise((r) => setTimeout(r, Math.min(sampleS * 1000, endAt - performance.now())));
    await sample();
    const last = samples.at(-1);
    process.stderr.write(
      `  t=${last.t.toFixed(0)}s ok=${tally.ok} failed=${tally.failed} ` +
        SERVICES.map(
          (s) => `${s}=${mb(last.services[s].rss)}/${mb(last.services[s].heap)}MB/${last.services[s].handles}h`,
        ).join(" ") +
        "\n",
    );
  }
  clearInterval(pacer);
  await Promise.all(inFlight);
  if (opts.out) writeFileSync(opts.out, JSON.stringify({ minutes, rps, sampleS, warmupS, windowS, samples }, null, 2));

  // Each metric's floor per window (the lowest sample in it): the heap after its collections, the handles between
  // requests. A leak raises the floors; GC's sawtooth and the requests in flight do not.
  const windows = [];
  for (const r of samples) {
    if (r.t < warmupS) continue;
    const i = Math.floor((r.t - warmupS) / windowS);
    windows[i] ??= [];
    windows[i].push(r);
  }
  // Only whole windows: a last window holding just the final sample (the load's end) would count that one sample as
  // its floor, and it is as likely a GC peak as not (it once made a flat heap read +0.9 MB/min).
  const perWindow = Math.floor(windowS / sampleS);
  const full = windows.filter((w) => w !== undefined && w.length >= perWindow);
  if (full.length < 3) throw new Error(`only ${full.length} windows of ${windowS} s after the warm-up: run longer`);
  const floor = (w, s, k) => Math.min(...w.map((r) => r.services[s][k]));
  const parts = [];
  let flat = true;
  for (const s of SERVICES) {
    const series = (k) => full.map((w) => [w[0].t / 60, floor(w, s, k)]);
    const first = (k) => floor(full[0], s, k);
    const last = (k) => floor(full.at(-1), s, k);
    const rss = slope(series("rss")) / 2 ** 20;
    const heap = slope(series("heap")) / 2 ** 20;
    const handles = slope(series("handles"));
    // The thresholds of "flat" (README.md).
    const growing = heap > 0.5 || rss > 2 || handles > 0.5;
    if (growing) flat = false;
    parts.push(
      `${s} rss=${mb(first("rss"))}→${mb(last("rss"))}MB(${sign(rss)}/min) ` +
        `heap=${mb(first("heap"))}→${mb(last("heap"))}MB(${sign(heap)}/min) ` +
        `handles=${first("handles")}→${last("handles")}(${sign(handles)}/min)${growing ? " GROWING" : ""}`,
    );
  }
  const total = tally.ok + tally.failed;
  console.log(
    `soak minutes=${minutes} rps=${rps} requests=${total} ok=${((100 * tally.ok) / Math.max(1, total)).toFixed(1)}% ` +
      `${parts.join(" | ")} verdict=${flat ? "flat" : "growing"}`,
  );
} finally {
  await cleanup();
}

/** The value of a metric without labels (or the sum over its label sets) in Prometheus text. */
function metric(text, name) {
  let sum = 0;
  let found = false;
  for (const line of text.split("\n")) {
    if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) {
      sum += Number(line.slice(line.lastIndexOf(" ") + 1));
      found = true;
    }
  }
  return found ? sum : Number.NaN;
}

/** Least-squares slope of [x, y] points. */
function slope(points) {
  const n = points.length;
  const mx = points.reduce((a, [x]) => a + x, 0) / n;
  const my = points.reduce((a, [, y]) => a + y, 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

function mb(bytes) {
  return (bytes / 2 ** 20).toFixed(1);
}

function sign(v) {
  return `${v >= 0 ? "+" : ""}${v.toFixed(2)}`;
}
