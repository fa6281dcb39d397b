#!/usr/bin/env node
// The floor under issue 11's CPU target: what the least possible gateway costs per request on this machine, in one
// process and split in two processes with one hop between them, measured in the same run as Tokenmesh and Portkey.
//
//   npx node bench/gateway/floor.mjs [--rate max|R] [--repeats 3] [--variants one,h2,tcp,mesh-embedded] [--skip-portkey]
//                                    [--skip-mesh] [--duration 10]
//
// Each repeat runs, one after the other, the harness (../shared/bench-harness) at the max rate (or R requests/s),
// non-streamed, against every variant and the direct mock beside it:
// - one: node:http in, undici out, in one process (floor/one.mjs): what Portkey's shape costs without its features;
// - h2: the same split in two processes, each request one stream on a long-lived HTTP/2 session (floor/h2-*.mjs): the
//   hop of a unary gRPC call without grpc-js;
// - tcp: split in two over one TCP connection with length-prefixed frames (floor/tcp-*.mjs): the cheapest hop;
// - mesh: Tokenmesh, all five services, NATS and Redis (bench/gateway/run.mjs --skip-portkey, a fresh mesh a repeat);
// - mesh-embedded (only when named in --variants): the same mesh with the router's app inside the gateway's process
//   and no internal hop (run.mjs --embedded-router; ./embedded/, bench only), right after the mesh;
// - portkey: the Portkey gateway (the harness's examples/portkey).
// CPU per request sums the variant's own processes (for the mesh: its services, NATS and Redis); the upstream mock
// and wrk are never counted. A variant's max rate is also where it wakes least per request (each wake-up serves many
// requests), so besides the max read them at one fixed rate that all of them sustain (--rate 1000). Prints one line
// per repeat and variant and then the medians:
//   floor rate=max repeats=3 one_rps=… one_cpu_ms=… h2_rps=… h2_cpu_ms=… tcp_rps=… tcp_cpu_ms=… mesh_rps=… mesh_cpu_ms=… portkey_rps=… portkey_cpu_ms=…
import { spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort, waitFor } from "@tokenmesh/testing";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
if (Number(process.versions.node.split(".")[0]) < 24) {
  console.error(`Node ${process.version}: run with the project's Node 24 (npx node bench/gateway/floor.mjs ...)`);
  process.exit(2);
}
const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const at = args.indexOf(name);
  return at >= 0 ? args[at + 1] : fallback;
};
const repeats = Math.max(1, Number(opt("--repeats", "3")) || 3);
const duration = opt("--duration", "10");
const rate = String(opt("--rate", "max"));
const variants = opt("--variants", "one,h2,tcp").split(",");
const floors = variants.filter((v) => ["one", "h2", "tcp"].includes(v));
const order = [
  ...floors,
  ...(args.includes("--skip-mesh") ? [] : ["mesh"]),
  ...(variants.includes("mesh-embedded") ? ["mesh-embedded"] : []),
  ...(args.includes("--skip-portkey") ? [] : ["portkey"]),
];
const sharedHarness = resolve(process.env.BENCH_HARNESS ?? join(root, "../shared/bench-harness"));
if (!existsSync(join(sharedHarness, "bench.js"))) {
  console.error(`bench harness not found at ${sharedHarness}; set BENCH_HARNESS`);
  process.exit(2);
}
const dir = mkdtempSync(join(tmpdir(), "tokenmesh-floor-"));
const harness = join(dir, "harness");
cpSync(sharedHarness, harness, { recursive: true, filter: (src) => !src.includes("node_modules") });

const children = [];
process.on("exit", () => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGTERM");
  rmSync(dir, { recursive: true, force: true });
});
process.on("SIGINT", () => process.exit(130));
/** Resolves once something accepts connections on `port` (10 s at most). */
const listening = (port) =>
  waitFor(
    () =>
      new Promise((res) => {
        const s = connect(port, "127.0.0.1", () => {
          s.destroy();
          res(true);
        }).on("error", () => res(false));
      }),
    { intervalMs: 100, description: `a listener on port ${port}` },
  );
const start = async (file, env) => {
  const c = spawn(process.execPath, [join(here, "floor", file)], {
    stdio: ["ignore", "ignore", "inherit"],
    env: { ...process.env, ...env },
  });
  children.push(c);
  await listening(Number(env.PORT));
  return c.pid;
};

// One upstream mock for the floor variants (the mesh's run and Portkey's start their own); its CPU is not counted.
const mockPort = await freePort();
children.push(
  spawn(process.execPath, [join(harness, "mock-upstream.js")], {
    stdio: ["ignore", "ignore", "inherit"],
    env: { ...process.env, MOCK_HOST: "127.0.0.1", MOCK_PORT: String(mockPort) },
  }),
);
await listening(mockPort);
const mockUrl = `http://127.0.0.1:${mockPort}/v1`;

/** Starts a floor variant's processes once; returns its URL and its processes to watch. */
const startFloor = async (variant) => {
  const port = await freePort();
  if (variant === "one")
    return {
      url: `http://127.0.0.1:${port}/v1`,
      pids: { one: await start("one.mjs", { PORT: String(port), UPSTREAM: mockUrl }) },
    };
  const back = await freePort();
  const backPid = await start(`${variant}-back.mjs`, { PORT: String(back), UPSTREAM: mockUrl });
  const frontPid = await start(`${variant}-front.mjs`, { PORT: String(port), BACK_PORT: String(back) });
  return { url: `http://127.0.0.1:${port}/v1`, pids: { front: frontPid, back: backPid } };
};
const started = {};
for (const v of floors) started[v] = await startFloor(v);

const oneRun = ["--rates", rate, "--modes", "nonstream", "--repeats", "1", "--duration", duration];
/** Requests/s and CPU-ms per request (every counted process) of the harness result file's run of the target. */
const measure = (file, label, uncounted) => {
  const { runs } = JSON.parse(readFileSync(file, "utf8"));
  const r = runs.find(
    (x) => x.ok && x.target === label && String(x.rate) === rate && x.mode === "nonstream" && x.requests > 0,
  );
  if (!r) return { rps: NaN, cpu: NaN };
  const cpu = Object.entries(r.cpu_s ?? {})
    .filter(([name]) => !uncounted.includes(name))
    .reduce((sum, [, v]) => sum + (Number.isFinite(v) ? v : 0), 0);
  return { rps: r.rps, cpu: (1000 * cpu) / r.requests };
};
const run = (cmd, argv, env = process.env) => {
  const out = spawnSync(cmd, argv, {
    stdio: ["ignore", "pipe", "inherit"],
    env,
    maxBuffer: 64 << 20,
  }).stdout.toString();
  return out;
};
const results = Object.fromEntries(order.map((v) => [v, []]));
for (let rep = 1; rep <= repeats; rep++) {
  for (const v of order) {
    const out = join(dir, `${v}-${rep}.json`);
    if (v === "portkey") {
      run("bash", [join(harness, "examples/portkey/run.sh"), ...oneRun], { ...process.env, OUT: out });
      results[v].push(measure(out, "portkey", ["wrk", "other", "mock"]));
    } else if (v === "mesh" || v === "mesh-embedded") {
      const embedded = v === "mesh-embedded" ? ["--embedded-router"] : [];
      const text = run(process.execPath, [
        join(here, "run.mjs"),
        "--skip-portkey",
        ...embedded,
        "--cpu-rate",
        rate,
        ...oneRun,
      ]);
      const line = text
        .trim()
        .split("\n")
        .findLast((l) => l.startsWith("tokenmesh_rps="));
      const kv = Object.fromEntries((line ?? "").split(" ").map((p) => p.split("=")));
      results[v].push({ rps: Number(kv.tokenmesh_rps), cpu: Number(kv.tokenmesh_cpu_ms_per_req) });
    } else {
      const { url, pids } = started[v];
      const watch = Object.entries(pids).flatMap(([n, p]) => ["--watch-pid", `${n}=${p}`]);
      run(process.execPath, [
        join(harness, "bench.js"),
        "--baseline",
        mockUrl,
        "--target",
        url,
        "--label",
        v,
        "-H",
        "Authorization: Bearer sk-floor",
        ...watch,
        "--out",
        out,
        ...oneRun,
      ]);
      results[v].push(measure(out, v, ["wrk", "other", "mock"]));
    }
    const last = results[v].at(-1);
    console.log(`repeat=${rep} variant=${v} rps=${Math.round(last.rps)} cpu_ms_per_req=${last.cpu.toFixed(3)}`);
  }
}
const median = (xs) => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : NaN;
};
console.log(
  `floor rate=${rate} repeats=${repeats} ` +
    order
      .map((v) => {
        const key = v.replace("-", "_");
        return `${key}_rps=${Math.round(median(results[v].map((r) => r.rps)))} ${key}_cpu_ms=${median(results[v].map((r) => r.cpu)).toFixed(3)}`;
      })
      .join(" "),
);
