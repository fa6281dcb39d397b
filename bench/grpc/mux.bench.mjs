// What the gateway → router hop would save if many requests shared one long-lived HTTP/2 stream instead of one
// server-streaming call each. Both ways in one process (client and server, so the CPU is both sides of the hop),
// with @grpc/grpc-js and the shape of a routed answer (a request of ~300 bytes, two answer messages of ~200 bytes):
//
// - call: one server-streaming call per request (what the gateway does today);
// - mux:  `--streams` bidi streams opened once; a request is a frame `[id][kind][payload]`, the answer two frames
//         and an end frame with the same id, matched to the waiting request by id.
//
// Those two are the transport alone. Then the same through Tokenmesh's stack, as the gateway calls the router:
//
// - tm_call: GrpcServer serving RouterService.Route (span, metrics, signal per call), callStream through
//            createGrpcClient's tracing interceptor (what the gateway did until stop 19, GATEWAY_ROUTER_STREAMS=0);
// - tm_mux:  GrpcServer serving RouterService.RouteStream (a Multiplexed Route), MuxClient: each call with its
//            header (timeout, trace context, window), span and metrics on both sides, cancellation and credit
//            (the gateway's default since stop 19). Real RouteRequest/RouteResponse messages.
//
// Prints ONE line:
//
//   grpc.mux call_cpu_us=… mux_cpu_us=… … tm_call_cpu_us=… tm_mux_cpu_us=… … tm_cpu_ratio=…
//
// Run: npm run build && node [--import @tokenmesh/telemetry/register] bench/grpc/mux.bench.mjs [--requests 20000]
//      [--concurrency 64] [--streams 4]

import { PerformanceObserver } from "node:perf_hooks";
import { parseArgs } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { FinishReason, Role } from "@tokenmesh/proto/common/v1/chat";
import {
  RouteRequest,
  RouteResponse,
  RouterServiceClient,
  RouterServiceService,
} from "@tokenmesh/proto/router/v1/router";
import { AppError, callStream, createGrpcClient, GrpcServer, Multiplexed, MuxClient } from "@tokenmesh/runtime";
import { createLogger } from "@tokenmesh/telemetry";

const { values: args } = parseArgs({
  options: {
    requests: { type: "string", default: "20000" },
    concurrency: { type: "string", default: "64" },
    streams: { type: "string", default: "4" },
  },
});
const total = Number(args.requests);
const concurrency = Number(args.concurrency);
const streams = Number(args.streams);
const id = (x) => x;
const codec = {
  requestSerialize: id,
  requestDeserialize: id,
  responseSerialize: id,
  responseDeserialize: id,
};
const def = {
  Route: { path: "/bench.v1.Router/Route", requestStream: false, responseStream: true, ...codec },
  RouteMux: { path: "/bench.v1.Router/RouteMux", requestStream: true, responseStream: true, ...codec },
};
const request = Buffer.alloc(300, 7);
const answer = [Buffer.alloc(180, 1), Buffer.alloc(220, 2)];
const DATA = 0;
const END = 1;
const frame = (rid, kind, payload) => {
  const b = Buffer.allocUnsafe(5 + payload.length);
  b.writeUInt32BE(rid, 0);
  b[4] = kind;
  payload.copy(b, 5);
  return b;
};
const empty = Buffer.alloc(0);

const server = new grpc.Server();
server.addService(def, {
  Route: (call) => {
    for (const a of answer) call.write(a);
    call.end();
  },
  RouteMux: (call) => {
    call.on("data", (f) => {
      const rid = f.readUInt32BE(0);
      // As a handler would answer: in a later turn than the request arrived.
      setImmediate(() => {
        for (const a of answer) call.write(frame(rid, DATA, a));
        call.write(frame(rid, END, empty));
      });
    });
    call.on("end", () => call.end());
  },
});
const port = await new Promise((res, rej) =>
  server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))),
);
const Client = grpc.makeGenericClientConstructor(def, "Router");
const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { "grpc.enable_channelz": 0 });

const viaCall = () =>
  new Promise((resolve, reject) => {
    const call = client.Route(request, { deadline: new Date(Date.now() + 60_000) });
    let n = 0;
    call.on("data", () => {
      n++;
    });
    call.on("end", () => resolve(n));
    call.on("error", reject);
  });

let nextId = 1;
const waiting = new Map();
const muxes = Array.from({ length: streams }, () => {
  const s = client.RouteMux();
  s.on("data", (f) => {
    const rid = f.readUInt32BE(0);
    const w = waiting.get(rid);
    if (!w) return;
    if (f[4] === DATA) w.n++;
    else {
      waiting.delete(rid);
      w.resolve(w.n);
    }
  });
  s.on("error", () => {});
  return s;
});
let turn = 0;
const viaMux = () =>
  new Promise((resolve) => {
    const rid = nextId++;
    waiting.set(rid, { n: 0, resolve });
    muxes[turn++ % streams].write(frame(rid, DATA, request));
  });

// Tokenmesh's stack: RouterService with a Route that answers like a routed non-streamed request (the route with the
// first chunk, then the last chunk with usage).
const routeRequest = RouteRequest.fromPartial({
  context: { requestId: "bench", keyId: "key", team: "team" },
  request: { model: "gpt-fake", messages: [{ role: Role.ROLE_USER, content: "x".repeat(200) }] },
  routeWithFirstChunk: true,
  batchChunks: true,
});
const answerMessages = [
  RouteResponse.fromPartial({
    chunk: { id: "c1", model: "gpt-fake", choices: [{ role: Role.ROLE_ASSISTANT, content: "y".repeat(120) }] },
    chunkRoute: { model: "gpt-fake", provider: "openai", attempts: 1, reason: "alias" },
  }),
  RouteResponse.fromPartial({
    chunk: {
      id: "c1",
      model: "gpt-fake",
      choices: [{ finishReason: FinishReason.FINISH_REASON_STOP }],
      usage: { inputTokens: 60, outputTokens: 30 },
    },
  }),
];
async function* route() {
  await new Promise((r) => setImmediate(r));
  yield* answerMessages;
}
const unused = async () => {
  throw new AppError("INTERNAL", "not used");
};
const tm = new GrpcServer({ logger: createLogger({ service: "bench", level: "silent" }) });
tm.add(RouterServiceService, {
  route,
  routeStream: new Multiplexed(RouterServiceService.route.path, route),
  embed: unused,
  listModels: unused,
  getUpgrade: unused,
});
const tmAddress = `127.0.0.1:${await tm.listen("127.0.0.1", 0)}`;
const tmClient = createGrpcClient(RouterServiceClient, tmAddress);
const tmPlain = new RouterServiceClient(tmAddress, grpc.credentials.createInsecure(), {
  channelOverride: tmClient.getChannel(),
});
const tmMux = new MuxClient({
  path: RouterServiceService.route.path,
  method: RouterServiceService.routeStream,
  client: tmPlain,
  streams,
});
const drainAll = async (it) => {
  let n = 0;
  for await (const _ of it) n++;
  return n;
};
const viaTmCall = () =>
  drainAll(callStream(tmClient.route.bind(tmClient), routeRequest, { signal: new AbortController().signal }));
const viaTmMux = () => drainAll(tmMux.call(routeRequest, { signal: new AbortController().signal }));

let minorGcMs = 0;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) if (e.detail?.kind === 1) minorGcMs += e.duration; // NODE_PERFORMANCE_GC_MINOR
}).observe({ entryTypes: ["gc"] });

async function measure(one) {
  for (let i = 0; i < 3000; i++) await one(); // warm-up: JIT, session
  const gc0 = minorGcMs;
  const cpu0 = process.cpuUsage();
  const t = performance.now();
  let started = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (started < total) {
        started++;
        if ((await one()) !== 2) throw new Error("an answer lost a message");
      }
    }),
  );
  const secs = (performance.now() - t) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return {
    cpu: (cpu.user + cpu.system) / total,
    rps: total / secs,
    gc: ((minorGcMs - gc0) * 1000) / total,
  };
}

// Alternating, twice each, so a phase of the machine does not favour one.
const runs = { call: [], mux: [], tm_call: [], tm_mux: [] };
for (let r = 0; r < 2; r++) {
  runs.call.push(await measure(viaCall));
  runs.mux.push(await measure(viaMux));
  runs.tm_call.push(await measure(viaTmCall));
  runs.tm_mux.push(await measure(viaTmMux));
}
const mean = (xs, k) => xs.reduce((s, x) => s + x[k], 0) / xs.length;
const fmt = (name) =>
  `${name}_cpu_us=${mean(runs[name], "cpu").toFixed(0)} ${name}_rps=${mean(runs[name], "rps").toFixed(0)} ` +
  `${name}_minor_gc_ms_per_1k=${mean(runs[name], "gc").toFixed(1)}`;
console.log(
  `grpc.mux ${fmt("call")} ${fmt("mux")} cpu_ratio=${(mean(runs.mux, "cpu") / mean(runs.call, "cpu")).toFixed(2)} ` +
    `${fmt("tm_call")} ${fmt("tm_mux")} tm_cpu_ratio=${(mean(runs.tm_mux, "cpu") / mean(runs.tm_call, "cpu")).toFixed(2)} ` +
    `requests=${total} concurrency=${concurrency} streams=${streams}`,
);
for (const s of muxes) s.end();
client.close();
server.forceShutdown();
tmMux.close();
tmClient.close();
await tm.shutdown(1_000);
