#!/usr/bin/env node
// Gateway overhead: the shared harness (../shared/bench-harness) measures Tokenmesh and the Portkey gateway against
// the same mock upstream in one run, then prints one comparison line. See README.md.
//
//   node bench/gateway/run.mjs [--skip-portkey] [bench.js args, e.g. --rates 500,1000,max --repeats 3]
import { spawn, spawnSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { get as httpGet } from "node:http";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gcEvents, median } from "../gc/trace.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
if (Number(process.versions.node.split(".")[0]) < 24) {
  console.error(`Node ${process.version}: run with the project's Node 24 (npx node bench/gateway/run.mjs ...)`);
  process.exit(2);
}
const sharedHarness = resolve(process.env.BENCH_HARNESS ?? join(root, "../shared/bench-harness"));
if (!existsSync(join(sharedHarness, "bench.js"))) {
  console.error(`bench harness not found at ${sharedHarness}; set BENCH_HARNESS`);
  process.exit(2);
}
const args = process.argv.slice(2);
const skipPortkey = args.includes("--skip-portkey");
// --profile DIR: each service writes a V8 CPU profile into DIR when it exits (open them in Chrome DevTools).
const profileAt = args.indexOf("--profile");
const profileDir = profileAt >= 0 ? resolve(args[profileAt + 1]) : undefined;
// --wakeups RATES (e.g. 10,100,500): instead of the harness, paced load on Tokenmesh alone at each rate, printing
// each process's CPU and context switches (every thread) per request: what waking up costs on this machine.
const wakeAt = args.indexOf("--wakeups");
const wakeRates =
  wakeAt >= 0
    ? (args[wakeAt + 1] ?? "")
        .split(",")
        .map(Number)
        .filter((r) => r > 0)
    : [];
// --gc-trace DIR (with --wakeups): each service runs with --trace-gc-nvp, its stdout in DIR/<service>.log, and each
// rate prints a third line with what the young- and old-generation GCs of the busy services did in the window.
const gcTraceAt = args.indexOf("--gc-trace");
const gcTraceDir = gcTraceAt >= 0 ? resolve(args[gcTraceAt + 1]) : undefined;
// --wake-mode stream: the --wakeups load asks for streamed answers (default nonstream).
const wakeModeAt = args.indexOf("--wake-mode");
const wakeStream = wakeModeAt >= 0 && args[wakeModeAt + 1] === "stream";
// --ttfb-probe N: instead of the harness, 5 s of streamed load at 300 rps (the JIT warms up), then N sequential streamed
// requests alternating between the mock (direct) and Tokenmesh; prints their time-to-first-byte p50 and the overhead.
const probeAt = args.indexOf("--ttfb-probe");
const probeCount = probeAt >= 0 ? Number(args[probeAt + 1]) || 200 : 0;
// --phases (with --ttfb-probe): then the same N requests again with strace on the gateway and the router, and the
// median of each step of the path to the first byte (see README.md). strace slows every traced system call, so read
// the steps for where the time goes; the probe's p50 above it is the measurement.
const phases = args.includes("--phases");
// --cpu-rate R: the CPU per request of the comparison line is read at this step of --rates (default: max).
const cpuRateAt = args.indexOf("--cpu-rate");
const cpuRate = cpuRateAt >= 0 ? String(args[cpuRateAt + 1]) : "max";
// --embedded-router: the gateway runs the router's app in its own process and calls its Route handler directly
// (./embedded/, bench only): the mesh without its internal hop, to measure what the hop costs. The router process is
// still started (its readiness is waited for) and counted; it serves no chat request.
const embeddedRouter = args.includes("--embedded-router");
const benchArgs = args.filter(
  (a, i) =>
    a !== "--skip-portkey" &&
    a !== "--phases" &&
    a !== "--embedded-router" &&
    (probeAt < 0 || (i !== probeAt && i !== probeAt + 1)) &&
    (profileAt < 0 || (i !== profileAt && i !== profileAt + 1)) &&
    (wakeAt < 0 || (i !== wakeAt && i !== wakeAt + 1)) &&
    (wakeModeAt < 0 || (i !== wakeModeAt && i !== wakeModeAt + 1)) &&
    (gcTraceAt < 0 || (i !== gcTraceAt && i !== gcTraceAt + 1)) &&
    (cpuRateAt < 0 || (i !== cpuRateAt && i !== cpuRateAt + 1)),
);
// The comparison line compares both gateways at ONE fixed rate. Left to itself the harness picks, per gateway, the
// highest fixed rate at most half that gateway's own max, so a faster Tokenmesh was read at 1000 rps against
// Portkey at 500. Unless --summary-rate is given, both are read at the lowest fixed rate of --rates (issue 11's
// targets are at 500).
const ratesAt = benchArgs.indexOf("--rates");
const fixedRates = (ratesAt >= 0 ? (benchArgs[ratesAt + 1] ?? "") : "")
  .split(",")
  .map(Number)
  .filter((r) => Number.isFinite(r) && r > 0);
if (!benchArgs.includes("--summary-rate") && fixedRates.length > 0) {
  benchArgs.push("--summary-rate", String(Math.min(...fixedRates)));
}
const dir = mkdtempSync(join(tmpdir(), "tokenmesh-bench-"));
// A private copy: the Portkey example installs its packages into its own folder.
const harness = join(dir, "harness");
cpSync(sharedHarness, harness, { recursive: true, filter: (src) => !src.includes("node_modules") });
const children = [];
const freePort = () =>
  new Promise((res) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
const start = (name, cmd, argv, opts = {}) => {
  const c = spawn(cmd, argv, { stdio: ["ignore", "ignore", "inherit"], ...opts });
  children.push(c);
  c.name = name;
  return c;
};
const stopAll = () => {
  for (const c of children.splice(0).reverse()) if (c.exitCode === null) c.kill("SIGTERM");
};
process.on("exit", stopAll);
process.on("SIGINT", () => process.exit(130));
/**
 * The steps of a streamed request's path to its first byte, from strace logs (`-f -ttt`) of the gateway and the
 * router taken while requests ran one at a time: the gateway reads the request, writes to the router, the router
 * reads it, writes the upstream request, reads the upstream's answer, writes the first chunk, the gateway reads it
 * and writes the response's first bytes. Prints the median of each step.
 */
const ttfbPhases = (gatewayLog, routerLog) => {
  const events = [];
  for (const [who, log] of [
    ["gw", gatewayLog],
    ["rt", routerLog],
  ]) {
    for (const line of log.split("\n")) {
      const m = /^\d+\s+([\d.]+)\s+(read|write|writev)\((\d+), (.*)$/.exec(line);
      if (m) events.push({ t: Number(m[1]) * 1000, who, call: m[2], text: m[4] });
    }
  }
  events.sort((a, b) => a.t - b.t);
  const steps = [
    ["gateway: request read -> router call written", (e) => e.who === "gw" && e.call === "writev"],
    ["hop gateway -> router", (e) => e.who === "rt" && e.call === "read"],
    [
      "router: call read -> upstream request written",
      (e) => e.who === "rt" && e.call === "writev" && e.text.includes("POST /v1"),
    ],
    ["upstream", (e) => e.who === "rt" && e.call === "read" && e.text.includes("HTTP/1.1 200")],
    ["router: answer read -> first chunk written", (e) => e.who === "rt" && e.call === "writev"],
    ["hop router -> gateway", (e) => e.who === "gw" && e.call === "read"],
    [
      "gateway: chunk read -> first bytes written",
      (e) => e.who === "gw" && e.call === "writev" && e.text.includes("HTTP/1.1 200"),
    ],
  ];
  const done = [];
  let cur;
  for (const e of events) {
    if (e.who === "gw" && e.call === "read" && e.text.includes("POST /v1/chat")) {
      cur = [e.t];
      continue;
    }
    if (cur === undefined) continue;
    if (steps[cur.length - 1][1](e)) cur.push(e.t);
    if (cur.length === steps.length + 1) {
      done.push(cur);
      cur = undefined;
    }
  }
  const parts = steps.map(([name], i) => `  ${name}: ${median(done.map((d) => d[i + 1] - d[i])).toFixed(3)} ms`);
  return [
    `ttfb-phases requests=${done.length} (under strace) total_p50_ms=${median(done.map((d) => d.at(-1) - d[0])).toFixed(3)}`,
    ...parts,
  ].join("\n");
};
/** Lets the services exit on their own (a CPU profile is written only on a clean exit), for at most 15 s. */
const finish = async () => {
  const exits = children.filter((c) => c.exitCode === null).map((c) => new Promise((r) => c.once("exit", r)));
  stopAll();
  await Promise.race([Promise.all(exits), new Promise((r) => setTimeout(r, 15_000))]);
  process.exit(0);
};
const waitHttp = async (url, ms = 60_000) => {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} not ready`);
};

if (!existsSync(join(root, "services/gateway/dist/main.js"))) {
  spawnSync("npm", ["run", "build"], { cwd: root, stdio: "inherit" });
}
const [natsPort, redisPort, mockPort, natsMonitorPort] = [
  await freePort(),
  await freePort(),
  await freePort(),
  await freePort(),
];
const natsProc = start("nats", "nats-server", [
  "-js",
  "-m",
  String(natsMonitorPort),
  "-a",
  "127.0.0.1",
  "-p",
  String(natsPort),
  "-sd",
  join(dir, "nats"),
]);
const redisProc = start("redis", "redis-server", [
  "--port",
  String(redisPort),
  "--bind",
  "127.0.0.1",
  "--save",
  "",
  "--appendonly",
  "no",
]);
const mock = start("mock", process.execPath, [join(harness, "mock-upstream.js")], {
  env: { ...process.env, MOCK_PORT: String(mockPort) },
});
const mockUrl = `http://127.0.0.1:${mockPort}/v1`;
writeFileSync(
  join(dir, "mesh.yaml"),
  `models:\n  - { id: gpt-4o-mini, engine: openai, base_url: "${mockUrl}", upstream_model: gpt-4o-mini }\n`,
);
const ports = {};
for (const s of ["guard", "router", "inference", "cost", "gateway"]) ports[s] = [await freePort(), await freePort()];
const adminKey = "bench-admin-key-0123456789";
const env = {
  ...process.env,
  NATS_URL: `nats://127.0.0.1:${natsPort}`,
  REDIS_URL: `redis://127.0.0.1:${redisPort}`,
  MESH_CONFIG: join(dir, "mesh.yaml"),
  // What `npm start` and docker-compose give every service (scripts/start.mjs); BENCH_SERVICE_NODE_FLAGS come later.
  NODE_OPTIONS: ["--max-semi-space-size=16", process.env.NODE_OPTIONS].filter(Boolean).join(" "),
  LOG_LEVEL: "warn",
  TOKENMESH_ADMIN_KEY: adminKey,
  INFERENCE_ADDR: `127.0.0.1:${ports.inference[0]}`,
  GUARD_ADDR: `127.0.0.1:${ports.guard[0]}`,
  ROUTER_ADDR: `127.0.0.1:${ports.router[0]}`,
  COST_ADDR: `127.0.0.1:${ports.cost[0]}`,
  GATEWAY_HTTP_PORT: String(ports.gateway[1]),
  GATEWAY_GRPC_PORT: String(ports.gateway[0]),
};
await new Promise((r) => setTimeout(r, 500));
const pids = {};
for (const s of ["inference", "guard", "router", "cost", "gateway"]) {
  const upper = s.toUpperCase();
  const prof = profileDir ? ["--cpu-prof", "--cpu-prof-dir", join(profileDir, s)] : [];
  // BENCH_SERVICE_NODE_FLAGS: extra node/V8 flags for every service (e.g. GC settings), as in bench/inference.
  prof.push(...(process.env.BENCH_SERVICE_NODE_FLAGS ?? "").split(" ").filter(Boolean));
  if (gcTraceDir) {
    mkdirSync(gcTraceDir, { recursive: true });
    prof.push("--trace-gc-nvp");
  }
  if (embeddedRouter && s === "gateway") prof.push("--import", join(root, "bench/gateway/embedded/register.mjs"));
  const c = start(s, process.execPath, [...prof, "--import", "@tokenmesh/telemetry/register", "dist/main.js"], {
    ...(gcTraceDir ? { stdio: ["ignore", openSync(join(gcTraceDir, `${s}.log`), "w"), "inherit"] } : {}),
    cwd: join(root, "services", s),
    env: { ...env, [`${upper}_GRPC_PORT`]: String(ports[s][0]), [`${upper}_OPS_PORT`]: String(ports[s][1]) },
  });
  pids[s] = c.pid;
  await waitHttp(`http://127.0.0.1:${ports[s][1]}/readyz`);
}
const gateway = `http://127.0.0.1:${ports.gateway[1]}`;
const keyRes = await fetch(`${gateway}/admin/keys`, {
  method: "POST",
  headers: { authorization: `Bearer ${adminKey}`, "content-type": "application/json" },
  body: JSON.stringify({ name: "bench" }),
});
const { key } = await keyRes.json();

/** Runs a harness command, passes its output on, and returns its last line (the harness's summary). */
const harnessLine = (cmd, argv, env = process.env) => {
  const text = spawnSync(cmd, argv, {
    stdio: ["ignore", "pipe", "inherit"],
    env,
    maxBuffer: 64 * 1024 * 1024,
  }).stdout.toString();
  process.stdout.write(text);
  return text.trim().split("\n").at(-1);
};
// NATS and Redis are part of what the mesh costs per request.
const watch = Object.entries({ ...pids, nats: natsProc.pid, redis: redisProc.pid }).flatMap(([n, p]) => [
  "--watch-pid",
  `${n}=${p}`,
]);
/**
 * What one request costs the shared parts, counted rather than timed: Redis commands (INFO commandstats), NATS
 * messages in and out (the server's /varz) and gateway requests (its own counter), read before and after the
 * Tokenmesh run.
 */
const redisCli = (...a) => spawnSync("redis-cli", ["-p", String(redisPort), ...a], { encoding: "utf8" }).stdout ?? "";
const sharedCounts = async () => {
  const commands = {};
  for (const line of redisCli("info", "commandstats").split("\n")) {
    const m = /^cmdstat_([^:]+):calls=(\d+)/.exec(line.trim());
    if (m) commands[m[1]] = Number(m[2]);
  }
  const varz = await (await fetch(`http://127.0.0.1:${natsMonitorPort}/varz`)).json();
  const metrics = await (await fetch(`${gateway}/metrics`)).text();
  let requests = 0;
  for (const line of metrics.split("\n")) {
    if (line.startsWith("tokenmesh_gateway_requests_total{")) requests += Number(line.split(" ").at(-1));
  }
  return { commands, natsIn: varz.in_msgs, natsOut: varz.out_msgs, requests };
};
if (probeCount > 0) {
  const body = join(dir, "probe-body.json");
  writeFileSync(
    body,
    JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Hello there" }], stream: true }),
  );
  spawnSync("wrk", ["-t1", "-c16", "-d5s", "-s", join(harness, "wrk-openai.lua"), `${gateway}/v1/chat/completions`], {
    env: {
      ...process.env,
      BENCH_BODY_FILE: body,
      BENCH_HEADERS: `Authorization: Bearer ${key}\nContent-Type: application/json`,
      BENCH_RATE: "300",
      BENCH_THREADS: "1",
      BENCH_VERIFY: "stream",
    },
  });
  const { request, Agent } = await import("node:http");
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const payload = JSON.stringify({
    model: "gpt-4o-mini",
    messages: [{ role: "user", content: "Hello there" }],
    stream: true,
  });
  const ttfb = (url, headers) =>
    new Promise((res, rej) => {
      const t0 = process.hrtime.bigint();
      const u = new URL(url);
      const req = request(
        {
          host: u.hostname,
          port: u.port,
          path: u.pathname,
          method: "POST",
          agent,
          headers: { "content-type": "application/json", ...headers },
        },
        (r) => {
          let first;
          r.on("data", () => {
            first ??= Number(process.hrtime.bigint() - t0) / 1e6;
          });
          r.on("end", () => (r.statusCode === 200 ? res(first) : rej(new Error(`status ${r.statusCode}`))));
        },
      );
      req.on("error", rej);
      req.end(payload);
    });
  const direct = [];
  const mesh = [];
  for (let i = 0; i < probeCount; i++) {
    direct.push(await ttfb(`${mockUrl}/chat/completions`, {}));
    mesh.push(await ttfb(`${gateway}/v1/chat/completions`, { authorization: `Bearer ${key}` }));
  }
  const p50 = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log(
    `ttfb-probe n=${probeCount} direct_p50_ms=${p50(direct).toFixed(2)} tokenmesh_p50_ms=${p50(mesh).toFixed(2)} overhead_p50_ms=${(p50(mesh) - p50(direct)).toFixed(2)}`,
  );
  if (phases) {
    // Not in `dir`: the services watch the catalog's folder, and every line strace wrote there would wake them.
    const traceDir = mkdtempSync(join(tmpdir(), "tokenmesh-strace-"));
    const traced = { gateway: join(traceDir, "gateway.txt"), router: join(traceDir, "router.txt") };
    const tracers = Object.entries(traced).map(([s, out]) =>
      spawn(
        "strace",
        ["--seccomp-bpf", "-f", "-ttt", "-e", "trace=read,write,writev", "-o", out, "-p", String(pids[s])],
        {
          stdio: "ignore",
        },
      ),
    );
    await new Promise((r) => setTimeout(r, 1_000));
    for (let i = 0; i < probeCount; i++)
      await ttfb(`${gateway}/v1/chat/completions`, { authorization: `Bearer ${key}` });
    const exited = tracers.map((t) => new Promise((r) => t.once("exit", r)));
    for (const t of tracers) t.kill("SIGINT");
    await Promise.all(exited);
    console.log(ttfbPhases(readFileSync(traced.gateway, "utf8"), readFileSync(traced.router, "utf8")));
    rmSync(traceDir, { recursive: true, force: true });
  }
  await finish();
}
if (wakeAt >= 0) {
  const procs = { ...pids, nats: natsProc.pid, redis: redisProc.pid, mock: mock.pid };
  const tick = 100; // USER_HZ
  const sample = () =>
    Object.fromEntries(
      Object.entries(procs).map(([name, pid]) => {
        const stat = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
        let switches = 0;
        let waitNs = 0;
        for (const task of readdirSync(`/proc/${pid}/task`)) {
          const status = readFileSync(`/proc/${pid}/task/${task}/status`, "utf8");
          for (const m of status.matchAll(/ctxt_switches:\s+(\d+)/g)) switches += Number(m[1]);
          // Time the thread was runnable but waited for a CPU (the scheduler's run queue), in ns.
          waitNs += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, "utf8").split(" ")[1]);
        }
        // Resident set (pages × 4 KiB), read at the end of the window.
        const rssMb = (Number(stat[21]) * 4096) / 2 ** 20;
        return [name, { cpu: (Number(stat[11]) + Number(stat[12])) / tick, switches, waitNs, rssMb }];
      }),
    );
  /** Bounds (s) of the "slower than" counts below, from the services' latency buckets. */
  const OVER_BOUNDS = ["0.0025", "0.005", "0.01", "0.025"];
  /** The summed count of the gateway's request and the router's upstream duration buckets at `le`. */
  const slowerThan = (le) =>
    new RegExp(
      `^tokenmesh_(?:gateway_request|router_upstream)_duration_seconds_bucket\\{[^}]*le="${le.replace("+", "\\+")}"[^}]*\\} (\\S+)$`,
      "gm",
    );
  /**
   * Each busy service's event-loop delay since the last read (p99 and max: how long a ready callback waited, GC
   * pauses included) and its GC count and seconds so far, from its own /metrics.
   */
  const loopStats = () =>
    ["gateway", "router", "cost"].map(async (service) => {
      // A connection of its own each time: fetch's pooled one may be one the server has just closed.
      const text = await new Promise((resolve, reject) =>
        httpGet(`http://127.0.0.1:${ports[service][1]}/metrics`, { agent: false }, (res) => {
          let t = "";
          res.setEncoding("utf8");
          res.on("data", (c) => {
            t += c;
          });
          res.on("end", () => resolve(t));
        }).on("error", reject),
      );
      const value = (re) => [...text.matchAll(re)].reduce((n, m) => n + Number(m[1]), 0);
      return {
        service,
        p99: value(/^\w*eventloop_lag_p99_seconds(?:\{[^}]*\})? (\S+)$/gm) * 1000,
        max: value(/^\w*eventloop_lag_max_seconds(?:\{[^}]*\})? (\S+)$/gm) * 1000,
        gcCount: value(/^\w*gc_duration_seconds_count(?:\{[^}]*\})? (\S+)$/gm),
        gcSum: value(/^\w*gc_duration_seconds_sum(?:\{[^}]*\})? (\S+)$/gm),
        // How many of the gateway's requests (whole, as it saw them) and the router's provider exchanges so far took
        // longer than each bound, from their duration histograms (cost has neither: zeros).
        over: Object.fromEntries(OVER_BOUNDS.map((le) => [le, value(slowerThan("+Inf")) - value(slowerThan(le))])),
      };
    });
  const body = join(dir, "wake-body.json");
  writeFileSync(
    body,
    JSON.stringify({
      model: "gpt-4o-mini",
      messages: [{ role: "user", content: "Hello there" }],
      ...(wakeStream ? { stream: true } : {}),
    }),
  );
  const seconds = 10;
  for (const rate of wakeRates) {
    const wrk = (s) =>
      spawnSync(
        "wrk",
        [
          "-t1",
          `-c${Math.max(16, Math.round(rate * 0.06))}`,
          `-d${s}s`,
          "-s",
          join(harness, "wrk-openai.lua"),
          `${gateway}/v1/chat/completions`,
        ],
        {
          encoding: "utf8",
          env: {
            ...process.env,
            BENCH_BODY_FILE: body,
            BENCH_HEADERS: `Authorization: Bearer ${key}\nContent-Type: application/json`,
            BENCH_RATE: String(rate),
            BENCH_THREADS: "1",
            BENCH_VERIFY: wakeStream ? "stream" : "nonstream",
          },
        },
      );
    wrk(3); // warm-up
    // GC counts so far; the read also resets the event-loop histogram (prom-client does at every read).
    const gcBefore = await Promise.all(loopStats());
    const traced = gcTraceDir ? ["gateway", "router", "cost"].map((svc) => [svc, gcTraceSize(svc)]) : [];
    const a = sample();
    const out = wrk(seconds);
    const b = sample();
    const loops = await Promise.all(loopStats());
    const summary = JSON.parse(/BENCH_JSON (.*)/.exec(out.stdout)?.[1] ?? "{}");
    const n = Math.max(1, summary.requests ?? 0);
    const per = Object.keys(procs).map((p) => [
      p,
      ((b[p].cpu - a[p].cpu) * 1000) / n,
      (b[p].switches - a[p].switches) / n,
      (b[p].waitNs - a[p].waitNs) / 1e6 / n,
      b[p].rssMb,
    ]);
    const total = per.reduce((t, [, c, w]) => [t[0] + c, t[1] + w], [0, 0]);
    console.log(
      `wakeups mode=${wakeStream ? "stream" : "nonstream"} rate=${rate} requests=${n} p50_ms=${((summary.latency_us?.p50 ?? 0) / 1000).toFixed(2)} p99_ms=${((summary.latency_us?.p99 ?? 0) / 1000).toFixed(2)} ` +
        per
          .map(
            ([p, c, w, q, rss]) =>
              `${p}_cpu_ms=${c.toFixed(2)} ${p}_cs=${w.toFixed(1)} ${p}_runq_ms=${q.toFixed(3)} ${p}_rss_mb=${rss.toFixed(0)}`,
          )
          .join(" ") +
        ` total_cpu_ms=${total[0].toFixed(2)} total_cs=${total[1].toFixed(1)}`,
    );
    console.log(
      `event-loop rate=${rate} ` +
        loops
          .map((l, i) => {
            const gcs = l.gcCount - gcBefore[i].gcCount;
            const gcMs = ((l.gcSum - gcBefore[i].gcSum) * 1000) / Math.max(1, gcs);
            const over = OVER_BOUNDS.map(
              (le) => `${l.service}_over${Number(le) * 1000}ms=${l.over[le] - gcBefore[i].over[le]}`,
            ).join(" ");
            return `${over} ${l.service}_lag_p99_ms=${l.p99.toFixed(1)} ${l.service}_lag_max_ms=${l.max.toFixed(1)} ${l.service}_gcs=${gcs} ${l.service}_gc_avg_ms=${gcMs.toFixed(1)}`;
          })
          .join(" "),
    );
    if (gcTraceDir) {
      console.log(`gc rate=${rate} ${traced.map(([svc, from]) => gcTraceSummary(svc, from)).join(" ")}`);
    }
  }
  process.exit(0);
}
/** The size of a service's GC trace so far (--gc-trace). */
function gcTraceSize(svc) {
  return statSync(join(gcTraceDir, `${svc}.log`)).size;
}

/**
 * What a service's GCs did since its trace was `from` bytes long (V8 writes the trace through a buffer, so the last
 * lines of the window may come in the next): scavenges, the mean bytes each promoted to the old generation (a mean:
 * what survives one scavenge is promoted at the next, so the bytes can alternate), their mean pause; full GCs and theirs.
 */
function gcTraceSummary(svc, from) {
  const gcs = gcEvents(readFileSync(join(gcTraceDir, `${svc}.log`), "utf8").slice(from));
  const young = gcs.filter((g) => g.young);
  const full = gcs.filter((g) => !g.young);
  const mean = (xs) => (xs.length ? xs.reduce((t, x) => t + x, 0) / xs.length : 0);
  return (
    `${svc}_scavenges=${young.length} ${svc}_promoted_kb=${(mean(young.map((g) => g.promoted)) / 1024).toFixed(0)} ` +
    `${svc}_scavenge_ms=${mean(young.map((g) => g.pause)).toFixed(1)} ${svc}_full_gcs=${full.length} ` +
    `${svc}_full_ms=${mean(full.map((g) => g.pause)).toFixed(1)}`
  );
}

// With Portkey, the repeats alternate between the two gateways: Tokenmesh's repeat 1, Portkey's repeat 1, Tokenmesh's
// repeat 2, ..., each a run of the harness with --repeats 1, and the harness's --report then aggregates each gateway's
// runs as if they were one run's repeats. The whole takes half an hour, over which this VM's speed drifts (by 15-20 %
// between the halves of runs that did one gateway after the other, bench/gateway/README.md "Stop 20"); alternating
// puts both gateways under the same drift. (The mesh stays up, idle, while Portkey runs; Portkey is started for each
// of its repeats. Within a repeat the harness alternates direct and gateway as before, in the order of its repeat 1.)
const repeatsAt = benchArgs.indexOf("--repeats");
const repeats = repeatsAt >= 0 ? Math.max(1, Number(benchArgs[repeatsAt + 1]) || 1) : 3;
const interleave = !skipPortkey && repeats > 1;
const oneRepeat = interleave
  ? [...benchArgs.filter((_, i) => repeatsAt < 0 || (i !== repeatsAt && i !== repeatsAt + 1)), "--repeats", "1"]
  : benchArgs;
const shared = { requests: 0, natsIn: 0, natsOut: 0, commands: {} };
const runTokenmesh = async (label) => {
  const before = await sharedCounts();
  const line = harnessLine(process.execPath, [
    join(harness, "bench.js"),
    "--baseline",
    mockUrl,
    "--target",
    `${gateway}/v1`,
    "--label",
    "tokenmesh",
    "-H",
    `Authorization: Bearer ${key}`,
    ...watch,
    "--out",
    join(dir, `${label}.json`),
    ...oneRepeat,
  ]);
  const after = await sharedCounts();
  shared.requests += after.requests - before.requests;
  shared.natsIn += after.natsIn - before.natsIn;
  shared.natsOut += after.natsOut - before.natsOut;
  for (const [c, v] of Object.entries(after.commands)) {
    shared.commands[c] = (shared.commands[c] ?? 0) + v - (before.commands[c] ?? 0);
  }
  return line;
};
const runPortkey = (label) =>
  harnessLine("bash", [join(harness, "examples/portkey/run.sh"), ...oneRepeat], {
    ...process.env,
    OUT: join(dir, `${label}.json`),
  });
/** Joins the runs of single-repeat harness runs into one result file, repeat k being the k-th file's. */
const mergeRepeats = (labels, into) => {
  const parts = labels.map((l) => JSON.parse(readFileSync(join(dir, `${l}.json`), "utf8")));
  const meta = { ...parts[0].meta, opts: { ...parts[0].meta.opts, repeats: parts.length } };
  const renumber = (key) => parts.flatMap((p, k) => (p[key] ?? []).map((r) => ({ ...r, repeat: k + 1 })));
  writeFileSync(join(dir, `${into}.json`), JSON.stringify({ meta, runs: renumber("runs"), ttfb: renumber("ttfb") }));
};
/** The harness's tables and summary line for a merged result file. */
const report = (label) => {
  const summaryAt = benchArgs.indexOf("--summary-rate");
  console.log(`\n# ${label}, ${repeats} repeats alternating with the other gateway's`);
  return harnessLine(process.execPath, [
    join(harness, "bench.js"),
    "--report",
    join(dir, `${label}.json`),
    ...(summaryAt >= 0 ? ["--summary-rate", benchArgs[summaryAt + 1]] : []),
  ]);
};

let tm;
let pk;
if (interleave) {
  for (let rep = 1; rep <= repeats; rep++) {
    console.log(`\n## repeat ${rep} of ${repeats}: Tokenmesh, then Portkey`);
    await runTokenmesh(`tokenmesh-${rep}`);
    runPortkey(`portkey-${rep}`);
  }
  const labels = (g) => Array.from({ length: repeats }, (_, k) => `${g}-${k + 1}`);
  mergeRepeats(labels("tokenmesh"), "tokenmesh");
  mergeRepeats(labels("portkey"), "portkey");
  tm = report("tokenmesh");
  pk = report("portkey");
} else {
  tm = await runTokenmesh("tokenmesh");
  if (!skipPortkey) pk = runPortkey("portkey");
}
{
  const n = shared.requests;
  const per = (v) => (v / Math.max(1, n)).toFixed(2);
  const redis = Object.entries(shared.commands)
    .map(([c, v]) => [c, v / Math.max(1, n)])
    .filter(([, v]) => v >= 0.01)
    .sort((x, y) => y[1] - x[1]);
  const total = redis.reduce((sum, [, v]) => sum + v, 0);
  console.log(
    `per request (${n} requests): redis_commands=${total.toFixed(2)} (${redis.map(([c, v]) => `${c}=${v.toFixed(2)}`).join(" ")}) ` +
      `nats_msgs_in=${per(shared.natsIn)} nats_msgs_out=${per(shared.natsOut)}`,
  );
}
mock.kill("SIGTERM");

const parse = (line) =>
  Object.fromEntries(
    (line ?? "")
      .split(" ")
      .map((kv) => kv.split("="))
      .filter((x) => x.length === 2),
  );
const a = parse(tm);
const b = parse(pk);
/**
 * CPU-seconds per request at the max rate (or --cpu-rate; non-streamed), median over repeats, summed over the watched
 * processes but the upstream mock: the harness watches the mock it starts for Portkey's runs (not for the mesh's,
 * whose mock this script starts), and counting it there gave Portkey the mock's ~0.1 ms a request (until stop 25).
 */
const cpuPerRequest = (file, label) => {
  try {
    const { runs } = JSON.parse(readFileSync(file, "utf8"));
    const perRun = runs
      .filter(
        (r) => r.ok && r.target === label && String(r.rate) === cpuRate && r.mode === "nonstream" && r.requests > 0,
      )
      .map((r) => {
        const cpu = Object.entries(r.cpu_s ?? {})
          .filter(([name]) => name !== "wrk" && name !== "other" && name !== "mock")
          .reduce((sum, [, v]) => sum + (Number.isFinite(v) ? v : 0), 0);
        return cpu / r.requests;
      })
      .sort((x, y) => x - y);
    return perRun.length ? perRun[Math.floor(perRun.length / 2)] * 1000 : undefined;
  } catch {
    return undefined;
  }
};
const tmCpu = cpuPerRequest(join(dir, "tokenmesh.json"), "tokenmesh");
const pkCpu = skipPortkey ? undefined : cpuPerRequest(join(dir, "portkey.json"), "portkey");
const ratio = (x, y) => (Number(y) > 0 ? (Number(x) / Number(y)).toFixed(2) : "n/a");
console.log(
  `tokenmesh_rps=${a.rps} portkey_rps=${b.rps ?? "n/a"} rps_vs_portkey=${ratio(a.rps, b.rps)} ` +
    `tokenmesh_overhead_p99_ms=${a.overhead_p99_ms} portkey_overhead_p99_ms=${b.overhead_p99_ms ?? "n/a"} p99_overhead_vs_portkey=${ratio(a.overhead_p99_ms, b.overhead_p99_ms)} ` +
    `tokenmesh_stream_ttfb_overhead_p50_ms=${a.stream_ttfb_overhead_p50_ms} ` +
    `tokenmesh_cpu_ms_per_req=${tmCpu?.toFixed(2) ?? "n/a"} portkey_cpu_ms_per_req=${pkCpu?.toFixed(2) ?? "n/a"} ` +
    `cpu_vs_portkey=${tmCpu && pkCpu ? (tmCpu / pkCpu).toFixed(2) : "n/a"} rate=${a.rate}`,
);
await finish();
