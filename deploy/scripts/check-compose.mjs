#!/usr/bin/env node
// Compose checks without a Docker engine:
//   1. `docker-compose config -q` (Debian's docker-compose, compose-spec schema + interpolation) on the base file and
//      on the base + GPU overlay;
//   2. the rendered stack (`docker-compose config`) has the five services, NATS with JetStream on a volume, Redis,
//      PostgreSQL (the router's semantic cache, which the router is pointed at), Prometheus, Grafana, the collector
//      and Jaeger; every service gets the OTLP endpoint and NODE_OPTIONS' young-generation bound; the GPU overlay reserves
//      an NVIDIA device for inference;
//   3. Prometheus scrapes every service on the ops port that .env gives it (the one file that cannot read .env).
// Usage: check-compose.mjs [COMPOSE_DIR]   (default deploy/compose). Exits 1 listing every problem.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const YAML = createRequire(join(here, "../tools/package.json"))("yaml");
const dir = resolve(process.argv[2] ?? join(here, "../compose"));
const SERVICES = ["gateway", "guard", "router", "inference", "cost"];
const OPS_VAR = {
  gateway: "GATEWAY_HTTP_PORT",
  guard: "GUARD_OPS_PORT",
  router: "ROUTER_OPS_PORT",
  inference: "INFERENCE_OPS_PORT",
  cost: "COST_OPS_PORT",
};
const problems = [];
// Secrets are read from the caller's shell; give the check a placeholder so interpolation succeeds.
const env = { ...process.env, TOKENMESH_ADMIN_KEY: process.env.TOKENMESH_ADMIN_KEY ?? "compose-config-check-key" };

function compose(files, extra) {
  const args = files.flatMap((f) => ["-f", join(dir, f)]);
  return spawnSync("docker-compose", [...args, "config", ...extra], { cwd: dir, env, encoding: "utf8" });
}

const stacks = [
  { name: "docker-compose.yml", files: ["docker-compose.yml"] },
  { name: "docker-compose.yml + docker-compose.gpu.yml", files: ["docker-compose.yml", "docker-compose.gpu.yml"] },
];
const rendered = {};
for (const s of stacks) {
  const q = compose(s.files, ["-q"]);
  if (q.error) {
    console.error(`docker-compose is not installed (${q.error.message})`);
    process.exit(1);
  }
  if (q.status !== 0) {
    problems.push(
      `${s.name}: docker-compose config -q failed:\n    ${(q.stderr || q.stdout).trim().replace(/\n/g, "\n    ")}`,
    );
    continue;
  }
  const full = compose(s.files, []);
  rendered[s.name] = YAML.parse(full.stdout);
  console.log(`ok   docker-compose config -q: ${s.name}`);
}

const base = rendered["docker-compose.yml"];
if (base) {
  const svc = base.services ?? {};
  for (const name of [...SERVICES, "nats", "redis", "postgres", "prometheus", "grafana", "otel-collector", "jaeger"])
    if (!svc[name]) problems.push(`service ${name} is missing`);
  if (!/^postgres(ql)?:\/\/[^/]*@?postgres:5432\//.test(svc.router?.environment?.ROUTER_SEMANTIC_CACHE_URL ?? ""))
    problems.push(
      "router: ROUTER_SEMANTIC_CACHE_URL must point at the postgres service (postgres://…@postgres:5432/…)",
    );
  for (const name of SERVICES) {
    const e = svc[name]?.environment ?? {};
    if (!e.OTEL_EXPORTER_OTLP_ENDPOINT) problems.push(`${name}: no OTEL_EXPORTER_OTLP_ENDPOINT`);
    if (!e.OTEL_SERVICE_NAME) problems.push(`${name}: no OTEL_SERVICE_NAME`);
    // No memory limit here, so without it V8 sizes the young generation from the host's memory (see the file).
    if (!/--max-semi-space-size=\d+/.test(e.NODE_OPTIONS ?? ""))
      problems.push(`${name}: NODE_OPTIONS must set --max-semi-space-size`);
    if (svc[name]?.build?.args?.SERVICE !== name) problems.push(`${name}: build arg SERVICE must be ${name}`);
  }
  const natsCmd = [].concat(svc.nats?.command ?? []).join(" ");
  if (!/(^|\s)(-js|--jetstream)(\s|$)/.test(natsCmd)) problems.push("nats: JetStream is not enabled (--jetstream)");
  const natsStore = natsCmd.match(/(?:-sd|--store_dir)[ =](\S+)/)?.[1];
  const natsVolumes = (svc.nats?.volumes ?? []).map((v) => (typeof v === "string" ? v : `${v.source}:${v.target}`));
  if (!natsStore || !natsVolumes.some((v) => v.endsWith(`:${natsStore}`) || v.includes(`:${natsStore}:`)))
    problems.push("nats: the JetStream store dir is not on a volume");
}
const gpu = rendered["docker-compose.yml + docker-compose.gpu.yml"];
if (gpu) {
  const devices = gpu.services?.inference?.deploy?.resources?.reservations?.devices ?? [];
  if (!devices.some((d) => d.driver === "nvidia" && (d.capabilities ?? []).flat().includes("gpu")))
    problems.push("GPU overlay: inference reserves no nvidia device with the gpu capability");
  if (gpu.services?.inference?.build?.target !== "inference-gpu")
    problems.push("GPU overlay: inference must build target inference-gpu");
}

// .env and prometheus.yml agree on every scrape port.
const dotenv = Object.fromEntries(
  readFileSync(join(dir, ".env"), "utf8")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#") && l.includes("="))
    .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
);
let prom;
try {
  prom = YAML.parse(readFileSync(join(dir, "prometheus/prometheus.yml"), "utf8"));
} catch (err) {
  problems.push(`prometheus/prometheus.yml: ${err.message}`);
}
const targets = (prom?.scrape_configs ?? []).flatMap((c) => (c.static_configs ?? []).flatMap((s) => s.targets ?? []));
for (const name of SERVICES) {
  const port = dotenv[OPS_VAR[name]];
  if (!port) problems.push(`.env: ${OPS_VAR[name]} is not set`);
  else if (!targets.includes(`${name}:${port}`))
    problems.push(`prometheus/prometheus.yml: no scrape target ${name}:${port} (${OPS_VAR[name]} in .env)`);
}

if (problems.length) {
  for (const p of problems) console.log(`FAIL ${p}`);
  process.exit(1);
}
console.log(`ok   compose stack: ${SERVICES.length} services + infrastructure; Prometheus targets match .env`);
