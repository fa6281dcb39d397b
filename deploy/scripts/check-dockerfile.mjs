#!/usr/bin/env node
// Static checks of the root Dockerfile (no engine needed): the default target is the slim runtime, both runnable
// targets (runtime, inference-gpu) run as a non-root user with a HEALTHCHECK and start through the telemetry
// register hook, the production install omits dev and optional deps, the GPU target installs node-llama-cpp's CUDA
// build on a CUDA base, .dockerignore keeps node_modules and build outputs out of the context, and the
// healthcheck's ports are the services' config.ts defaults.
// Usage: check-dockerfile.mjs [DOCKERFILE]   Exits 1 listing every problem.
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const file = resolve(process.argv[2] ?? join(repo, "Dockerfile"));
const text = readFileSync(file, "utf8").replace(/\\\n/g, " ");
const lines = text.split("\n").map((l) => l.trim());
const problems = [];

const stages = [];
for (const l of lines) {
  const from = l.match(/^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/i);
  if (from) stages.push({ base: from[1], name: from[2], body: [] });
  else if (stages.length && l && !l.startsWith("#")) stages.at(-1).body.push(l);
}
const stage = (n) => stages.find((s) => s.name === n);
if (stages.at(-1)?.name !== "runtime") problems.push("the last stage (the default target) must be `runtime`");
for (const name of ["runtime", "inference-gpu"]) {
  const s = stage(name);
  if (!s) {
    problems.push(`stage ${name} is missing`);
    continue;
  }
  const user = s.body
    .filter((l) => /^USER\s/i.test(l))
    .at(-1)
    ?.split(/\s+/)[1];
  if (!user || user === "root" || user === "0" || user.startsWith("0:"))
    problems.push(`${name}: must switch to a non-root USER`);
  if (!s.body.some((l) => /^HEALTHCHECK\s+(--\S+\s+)*CMD/i.test(l))) problems.push(`${name}: no HEALTHCHECK`);
  const entry = s.body.filter((l) => /^(ENTRYPOINT|CMD)\s/i.test(l)).join(" ");
  if (!entry.includes("@tokenmesh/telemetry/register") || !entry.includes("dist/main.js"))
    problems.push(`${name}: must start node --import @tokenmesh/telemetry/register dist/main.js`);
}
const gpu = stage("inference-gpu");
if (
  gpu &&
  !/cuda/i.test(
    gpu.base +
      stages
        .map((s) => s.body.join(" "))
        .join(" ")
        .match(/CUDA_IMAGE=\S+/)?.[0],
  )
)
  problems.push("inference-gpu: base image must be an NVIDIA CUDA runtime image");
if (!/@node-llama-cpp\/linux-x64-cuda/.test(text))
  problems.push("inference-gpu: does not install @node-llama-cpp/linux-x64-cuda");
const prodInstall = lines.find((l) => /npm ci .*--omit=dev/.test(l));
if (!prodInstall) problems.push("no production install (npm ci --omit=dev)");
else if (!/--omit=optional/.test(prodInstall))
  problems.push("npm ci --omit=dev must also pass --omit=optional (the command line replaces .npmrc's omit list)");
if (!/ARG SERVICE/.test(text)) problems.push("the Dockerfile must be parameterised by ARG SERVICE");

const ignore = join(dirname(file), ".dockerignore");
if (!existsSync(ignore)) problems.push(".dockerignore is missing");
else {
  const ig = readFileSync(ignore, "utf8");
  for (const p of ["node_modules", "dist", ".git"])
    if (!ig.split("\n").some((l) => l.includes(p))) problems.push(`.dockerignore does not exclude ${p}`);
}

// The healthcheck reads the same port variables with the same defaults as each service's config.ts.
const health = readFileSync(join(repo, "deploy/docker/healthcheck.mjs"), "utf8");
for (const [svc, v] of [
  ["gateway", "GATEWAY_HTTP_PORT"],
  ["guard", "GUARD_OPS_PORT"],
  ["router", "ROUTER_OPS_PORT"],
  ["inference", "INFERENCE_OPS_PORT"],
  ["cost", "COST_OPS_PORT"],
]) {
  const cfg = readFileSync(join(repo, "services", svc, "src/config.ts"), "utf8");
  const def = cfg.match(new RegExp(`${v}:\\s*env\\.port\\((\\d+)\\)`))?.[1];
  const hc = health.match(new RegExp(`${svc}:\\s*\\["${v}",\\s*(\\d+)\\]`))?.[1];
  if (!def) problems.push(`services/${svc}/src/config.ts: no ${v} default found`);
  else if (hc !== def)
    problems.push(`deploy/docker/healthcheck.mjs: ${svc} uses ${v} default ${hc}, config.ts says ${def}`);
}

if (problems.length) {
  for (const p of problems) console.log(`FAIL ${p}`);
  process.exit(1);
}
console.log(
  `ok   Dockerfile: ${stages.length} stages; runtime and inference-gpu non-root with HEALTHCHECK; healthcheck ports match config.ts`,
);
