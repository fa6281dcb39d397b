// What one gRPC hop costs on this machine: CPU per unary call (client + server in one process) and sequential
// round-trip latency, for plain @grpc/grpc-js and for Tokenmesh's stack on top of it (GrpcServer with spans, metrics,
// AbortSignal and deadline per call; createGrpcClient's tracing/metrics interceptor; callUnary). Prints ONE line.
//
//   npm run build && node --import @tokenmesh/telemetry/register bench/grpc/unary.bench.mjs [--calls 20000] [--concurrency 64]
//
// Run it with the telemetry hook (as the services run) or without it to see what tracing costs. This is the floor
// under the request path's budget: a chat request makes four such calls (guard check, router → inference stream,
// guard output filter), each paying both sides.

import { parseArgs } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { callUnary, createGrpcClient, GrpcServer } from "@tokenmesh/runtime";
import { createLogger } from "@tokenmesh/telemetry";

const { values: args } = parseArgs({
  options: { calls: { type: "string", default: "20000" }, concurrency: { type: "string", default: "64" } },
});
const calls = Number(args.calls);
const concurrency = Number(args.concurrency);
const id = (x) => x;
const def = {
  echo: {
    path: "/tokenmesh.bench.v1.EchoService/Echo",
    requestStream: false,
    responseStream: false,
    requestSerialize: id,
    requestDeserialize: id,
    responseSerialize: id,
    responseDeserialize: id,
  },
};
const payload = Buffer.alloc(300, 7); // about a short chat request
const Client = grpc.makeGenericClientConstructor(def, "EchoService");

async function measure(call) {
  for (let i = 0; i < 2000; i++) await call(); // warm-up: JIT, HTTP/2 session
  const lat = [];
  for (let i = 0; i < 2000; i++) {
    const s = performance.now();
    await call();
    lat.push(performance.now() - s);
  }
  lat.sort((a, b) => a - b);
  const cpu0 = process.cpuUsage();
  const t = performance.now();
  let started = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (started < calls) {
        started++;
        await call();
      }
    }),
  );
  const secs = (performance.now() - t) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { cpuUs: (cpu.user + cpu.system) / calls, rps: calls / secs, p50: lat[1000] };
}

// Plain grpc-js.
const rawServer = new grpc.Server();
rawServer.addService(def, { echo: (call, cb) => cb(null, call.request) });
const rawPort = await new Promise((res, rej) =>
  rawServer.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))),
);
const rawClient = new Client(`127.0.0.1:${rawPort}`, grpc.credentials.createInsecure());
const raw = await measure(() => new Promise((res, rej) => rawClient.echo(payload, (e, v) => (e ? rej(e) : res(v)))));
rawClient.close();
rawServer.forceShutdown();

// Tokenmesh's wrappers.
const server = new GrpcServer({ logger: createLogger({ service: "bench", level: "warn" }) });
server.add(def, { echo: async (req) => req });
const port = await server.listen("127.0.0.1", 0);
server.setServing(true);
const client = createGrpcClient(Client, `127.0.0.1:${port}`);
const tm = await measure(() => callUnary(client.echo.bind(client), payload, { deadlineMs: 5000 }));
client.close();
await server.shutdown(1000);

const tracing = process.execArgv.join(" ").includes("telemetry/register") && process.env.OTEL_SDK_DISABLED !== "true";
console.log(
  `grpc.unary raw_cpu_us_per_call=${raw.cpuUs.toFixed(0)} raw_rps=${raw.rps.toFixed(0)} raw_rtt_p50_ms=${raw.p50.toFixed(3)} ` +
    `tokenmesh_cpu_us_per_call=${tm.cpuUs.toFixed(0)} tokenmesh_rps=${tm.rps.toFixed(0)} tokenmesh_rtt_p50_ms=${tm.p50.toFixed(3)} ` +
    `calls=${calls} concurrency=${concurrency} tracing=${tracing}`,
);
process.exit(0);
