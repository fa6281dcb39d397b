#!/usr/bin/env node
// `npm start`: runs the whole mesh on this machine with the embedded defaults.
// 1. builds when any service has no dist/ yet; 2. writes the tiny test models when missing;
// 3. uses NATS and Redis at NATS_URL / REDIS_URL (defaults on 127.0.0.1), starting local nats-server /
//    redis-server when nothing answers and the binaries exist; 4. starts the five services;
// 5. prints the gateway URLs, the admin key and the models. A child that exits on its own is restarted with backoff
// (scripts/supervisor.mjs); Ctrl-C or SIGTERM stops everything cleanly.
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createSupervisor } from "./supervisor.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const state = join(root, ".tokenmesh");
mkdirSync(state, { recursive: true });
const env = { ...process.env };
const NATS_URL = env.NATS_URL ?? "nats://127.0.0.1:4222";
const REDIS_URL = env.REDIS_URL ?? "redis://127.0.0.1:6379";
const MESH_CONFIG = resolve(env.MESH_CONFIG ?? join(root, "config/mesh.yaml"));
const HTTP_PORT = env.GATEWAY_HTTP_PORT ?? "8080";
const GRPC_PORT = env.GATEWAY_GRPC_PORT ?? "50051";

function log(msg) {
  process.stdout.write(`[tokenmesh] ${msg}\n`);
}

// Every child (the services, and nats-server / redis-server when started here) is restarted with backoff when it
// exits on its own; services (tier 1) stop before the NATS and Redis (tier 0) they drain and flush into.
const supervisor = createSupervisor({ log });

function which(bin) {
  for (const dir of [...(env.PATH ?? "").split(":"), "/usr/sbin", "/usr/bin", "/usr/local/bin"]) {
    if (dir && existsSync(join(dir, bin))) return join(dir, bin);
  }
  return undefined;
}

function reachable(url) {
  const u = new URL(url.split(",")[0]);
  return new Promise((res) => {
    const s = connect({ host: u.hostname, port: Number(u.port) }, () => {
      s.destroy();
      res(true);
    });
    s.on("error", () => res(false));
    s.setTimeout(1000, () => {
      s.destroy();
      res(false);
    });
  });
}

async function waitReachable(url, ms) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await reachable(url)) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

async function ensureInfra(kind, url, bin, args) {
  if (await reachable(url)) {
    log(`${kind}: using ${url}`);
    return;
  }
  const path = which(bin);
  if (!path) {
    log(`${kind} is not reachable at ${url} and ${bin} is not installed.`);
    log(
      `Install it (Debian/Ubuntu: sudo apt-get install ${bin}), or set ${kind === "NATS" ? "NATS_URL" : "REDIS_URL"} to a running server.`,
    );
    process.exit(1);
  }
  log(`${kind}: starting ${bin} for ${url}`);
  supervisor.start({ name: bin, cmd: path, args: args(new URL(url)), env, tier: 0 });
  if (!(await waitReachable(url, 10_000))) {
    log(`${bin} did not start; see its output above`);
    await stop(1);
  }
}

async function stop(code) {
  if (supervisor.stopping) return;
  log("stopping…");
  await supervisor.stop();
  process.exit(code);
}

for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(signal, () => void stop(0));

const services = ["inference", "guard", "router", "cost", "gateway"];
if (services.some((s) => !existsSync(join(root, "services", s, "dist/main.js")))) {
  log("building (first run)…");
  const b = spawnSync("npm", ["run", "build"], {
    cwd: root,
    stdio: "inherit",
    env: { ...env, TURBO_TELEMETRY_DISABLED: "1" },
  });
  if (b.status !== 0) process.exit(b.status ?? 1);
}
const models = spawnSync(
  process.execPath,
  [join(root, "packages/testing/dist/models/make-test-models.js"), join(root, "models")],
  {
    stdio: "inherit",
  },
);
if (models.status !== 0) process.exit(models.status ?? 1);

await ensureInfra("NATS", NATS_URL, "nats-server", (u) => [
  "-js",
  "-a",
  u.hostname,
  "-p",
  u.port || "4222",
  "-sd",
  join(state, "nats"),
]);
await ensureInfra("Redis", REDIS_URL, "redis-server", (u) => [
  "--bind",
  u.hostname,
  "--port",
  u.port || "6379",
  "--dir",
  state,
  "--appendonly",
  "yes",
  "--save",
  "",
]);

let adminKey = env.TOKENMESH_ADMIN_KEY;
if (!adminKey) {
  const file = join(state, "admin-key");
  adminKey = existsSync(file) ? readFileSync(file, "utf8").trim() : `tmadm_${randomBytes(24).toString("base64url")}`;
  writeFileSync(file, `${adminKey}\n`, { mode: 0o600 });
}
Object.assign(env, {
  NATS_URL,
  REDIS_URL,
  MESH_CONFIG,
  TOKENMESH_ADMIN_KEY: adminKey,
  GATEWAY_HTTP_PORT: HTTP_PORT,
  GATEWAY_GRPC_PORT: GRPC_PORT,
  // The router's semantic cache (when the catalog enables it): an embedded PostgreSQL kept across restarts.
  ROUTER_SEMANTIC_CACHE_URL: env.ROUTER_SEMANTIC_CACHE_URL ?? `file://${join(state, "semantic-cache")}`,
});

// V8 sizes the young generation from the machine's memory (64 MB on a 24 GB host); what a request leaves behind
// over node:http2 outlives young-generation GCs until a full one, so each of them copied ~6 MB at 500 rps: 15–18 ms
// pauses. 16 MB semi-spaces bound them to ~7 ms for about the same CPU (bench/gateway/README.md, stop 18).
// docker-compose sets the same; an operator's own NODE_OPTIONS come after it and win.
env.NODE_OPTIONS = ["--max-semi-space-size=16", env.NODE_OPTIONS].filter(Boolean).join(" ");
const node = [process.execPath, "--import", "@tokenmesh/telemetry/register", "dist/main.js"];
const readyUrls = {
  inference: "http://127.0.0.1:9104/readyz",
  guard: "http://127.0.0.1:9102/readyz",
  router: "http://127.0.0.1:9103/readyz",
  cost: "http://127.0.0.1:9105/readyz",
  gateway: `http://127.0.0.1:${HTTP_PORT}/readyz`,
};
for (const s of services) {
  const cwd = join(root, "services", s);
  supervisor.start({ name: s, cmd: node[0], args: node.slice(1), cwd, env, tier: 1, readyUrl: readyUrls[s] });
}

const ready = await Promise.all(
  services.map(async (name) => {
    if (await supervisor.waitReady(name, 60_000)) return true;
    if (!supervisor.stopping) log(`${name} is not ready at ${readyUrls[name]}`);
    return false;
  }),
);
if (supervisor.stopping) await new Promise(() => {});
let modelList = "";
try {
  const res = await fetch(`http://127.0.0.1:${HTTP_PORT}/v1/models`, {
    headers: { authorization: `Bearer ${adminKey}` },
  });
  if (res.ok) modelList = (await res.json()).data.map((m) => m.id).join(", ");
} catch {}
log(ready.every(Boolean) ? "mesh is ready" : "mesh started, but not every service is ready (see above)");
log(`  HTTP (OpenAI-compatible): http://127.0.0.1:${HTTP_PORT}/v1`);
log(`  gRPC GatewayService:      127.0.0.1:${GRPC_PORT}`);
log(`  admin key:                ${adminKey}   (also in .tokenmesh/admin-key unless TOKENMESH_ADMIN_KEY is set)`);
log(`  models:                   ${modelList || "see GET /v1/models"}`);
log(`  catalog:                  ${MESH_CONFIG}`);
log("A service that exits is restarted with backoff. Ctrl-C stops everything.");
