#!/usr/bin/env node
// Runs the five built services as processes (like scripts/start.mjs, but on free ports with a private nats-server
// and redis-server), sends a little traffic through the gateway so histograms and counters have samples, saves
// each service's real /metrics to OUT_DIR/<service>.prom, and runs `promtool check metrics` on each.
// Usage: node test/deploy/scrape-services.mjs [OUT_DIR]   (needs `npm run build` and `npm run models` first)
// Exits 1 when a service does not come up, or when promtool finds a problem in what it served.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { lintMetrics } from "./promtool-lint.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const outDir = resolve(process.argv[2] ?? mkdtempSync(join(tmpdir(), "tokenmesh-metrics-")));
mkdirSync(outDir, { recursive: true });
const state = mkdtempSync(join(tmpdir(), "tokenmesh-scrape-"));
const children = [];
const ADMIN_KEY = "tmadm_deploy_scrape_check_0123456789";

const freePort = () =>
  new Promise((res, rej) => {
    const s = createServer();
    s.on("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });

function start(name, cmd, args, opts = {}) {
  const log = [];
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], ...opts });
  for (const s of [child.stdout, child.stderr]) s.on("data", (d) => log.push(d.toString()));
  children.push({ name, child, log });
  return child;
}

async function waitHttp(url, ms) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (r.ok) return true;
    } catch {}
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}

async function stopAll() {
  // Services first (they drain and flush), then NATS and Redis.
  for (const group of [children.filter((c) => c.name !== "nats" && c.name !== "redis"), children]) {
    await Promise.all(
      group.map(
        ({ child }) =>
          new Promise((res) => {
            if (child.exitCode !== null || child.signalCode !== null) return res();
            child.once("exit", res);
            child.kill("SIGTERM");
            setTimeout(() => child.kill("SIGKILL"), 8000).unref();
          }),
      ),
    );
  }
  rmSync(state, { recursive: true, force: true });
}

const services = ["inference", "guard", "router", "cost", "gateway"];
for (const s of services) {
  if (!existsSync(join(root, "services", s, "dist/main.js"))) {
    console.error(`services/${s}/dist/main.js is missing: run npm run build first`);
    process.exit(1);
  }
}
if (!existsSync(join(root, "models/tiny-chat.gguf"))) {
  const r = spawnSync(
    process.execPath,
    [join(root, "packages/testing/dist/models/make-test-models.js"), join(root, "models")],
    {
      stdio: "inherit",
    },
  );
  if (r.status !== 0) process.exit(1);
}

const p = {};
for (const k of [
  "nats",
  "redis",
  "gwHttp",
  "gwGrpc",
  "guard",
  "guardOps",
  "router",
  "routerOps",
  "inf",
  "infOps",
  "cost",
  "costOps",
])
  p[k] = await freePort();
start("nats", "nats-server", ["-js", "-a", "127.0.0.1", "-p", String(p.nats), "-sd", join(state, "nats")]);
start("redis", "redis-server", ["--bind", "127.0.0.1", "--port", String(p.redis), "--save", "", "--appendonly", "no"]);

const env = {
  ...process.env,
  NATS_URL: `nats://127.0.0.1:${p.nats}`,
  REDIS_URL: `redis://127.0.0.1:${p.redis}`,
  MESH_CONFIG: join(root, "config/mesh.yaml"),
  TOKENMESH_ADMIN_KEY: ADMIN_KEY,
  LOG_LEVEL: "warn",
  OTEL_SDK_DISABLED: "true",
  GATEWAY_HOST: "127.0.0.1",
  GATEWAY_HTTP_PORT: String(p.gwHttp),
  GATEWAY_GRPC_PORT: String(p.gwGrpc),
  GUARD_HOST: "127.0.0.1",
  GUARD_GRPC_PORT: String(p.guard),
  GUARD_OPS_PORT: String(p.guardOps),
  ROUTER_HOST: "127.0.0.1",
  ROUTER_GRPC_PORT: String(p.router),
  ROUTER_OPS_PORT: String(p.routerOps),
  INFERENCE_HOST: "127.0.0.1",
  INFERENCE_GRPC_PORT: String(p.inf),
  INFERENCE_OPS_PORT: String(p.infOps),
  INFERENCE_GPU: "false",
  COST_HOST: "127.0.0.1",
  COST_GRPC_PORT: String(p.cost),
  COST_OPS_PORT: String(p.costOps),
  GUARD_ADDR: `127.0.0.1:${p.guard}`,
  ROUTER_ADDR: `127.0.0.1:${p.router}`,
  INFERENCE_ADDR: `127.0.0.1:${p.inf}`,
  COST_ADDR: `127.0.0.1:${p.cost}`,
};
const metricsUrl = {
  gateway: `http://127.0.0.1:${p.gwHttp}/metrics`,
  guard: `http://127.0.0.1:${p.guardOps}/metrics`,
  router: `http://127.0.0.1:${p.routerOps}/metrics`,
  inference: `http://127.0.0.1:${p.infOps}/metrics`,
  cost: `http://127.0.0.1:${p.costOps}/metrics`,
};

let failed = false;
try {
  for (const s of services)
    start(s, process.execPath, ["--import", "@tokenmesh/telemetry/register", "dist/main.js"], {
      cwd: join(root, "services", s),
      env,
    });
  const up = await Promise.all(
    services.map(async (s) => [s, await waitHttp(metricsUrl[s].replace("/metrics", "/readyz"), 60_000)]),
  );
  for (const [s, ok] of up) {
    if (ok) continue;
    const c = children.find((x) => x.name === s);
    console.log(
      `warning: ${s} is not ready (exit ${c.child.exitCode ?? "-"}); last output:\n${c.log.join("").slice(-1500)}`,
    );
  }

  // A little traffic, so latency histograms, token counters and the usage pipeline have samples. Best effort: the
  // check is about what /metrics serves, not about the chat path.
  const base = `http://127.0.0.1:${p.gwHttp}`;
  try {
    const created = await fetch(`${base}/admin/keys`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN_KEY}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "scrape", team: "deploy-check" }),
    });
    const { key } = await created.json();
    for (const stream of [false, true]) {
      const r = await fetch(`${base}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify({
          model: "local-tiny",
          messages: [{ role: "user", content: "hello" }],
          max_tokens: 8,
          stream,
        }),
        signal: AbortSignal.timeout(30_000),
      });
      await r.text();
      console.log(`traffic: chat (stream=${stream}) -> ${r.status}`);
    }
    await new Promise((r) => setTimeout(r, 6000)); // the cost consumer and the lag gauges (5 s timer)
  } catch (err) {
    console.log(`warning: traffic through the gateway failed: ${err.message}`);
  }

  for (const s of services) {
    let text;
    try {
      const r = await fetch(metricsUrl[s], { signal: AbortSignal.timeout(5000) });
      text = r.ok ? await r.text() : undefined;
    } catch {}
    if (text === undefined) {
      console.log(`FAIL ${s}: no /metrics at ${metricsUrl[s]}`);
      failed = true;
      continue;
    }
    const file = join(outDir, `${s}.prom`);
    writeFileSync(file, text);
    const families = (text.match(/^# TYPE /gm) ?? []).length;
    let lint;
    try {
      lint = lintMetrics(text);
    } catch (err) {
      console.log(`FAIL promtool: ${err.message}`);
      failed = true;
      continue;
    }
    if (lint.problems.length > 0) {
      console.log(`FAIL ${s}: promtool check metrics:\n  ${lint.problems.join("\n  ")}`);
      failed = true;
    } else {
      const note = lint.ignored.length
        ? ` (${lint.ignored.length} finding(s) on prom-client's default metrics ignored)`
        : "";
      console.log(`ok   ${s}: ${families} metric families, promtool check metrics passed${note} (${file})`);
    }
  }
} finally {
  await stopAll();
}
process.exit(failed ? 1 : 0);
