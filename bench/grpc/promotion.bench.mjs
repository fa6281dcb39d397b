// What a client's requests leave for the young-generation GC: at a paced rate, the bytes each scavenge finds alive
// and the bytes it promotes to the old generation, for three clients of a local server — node:http (HTTP/1.1,
// keep-alive), node:http2 (one session) and grpc-js (a server-streaming call, as the gateway calls the router).
// Each client runs in a child process of its own under `--trace-gc-nvp`; the server in another. Prints ONE line:
//
//   gc-promotion rate=500 http1_survived_kb=… http1_promoted_kb=… http1_pause_ms=… http2_… grpc_…
//
// (medians over the scavenges after a 3 s warm-up). Run: npm run build && node bench/grpc/promotion.bench.mjs
// [--rate 500] [--seconds 12] [--semi-space MB] [--kinds http1,http2,grpc,undici,undici_signal]. See
// bench/gateway/README.md (stops 18 and 19) for what it showed.

import { spawn } from "node:child_process";
import { once } from "node:events";
import { createRequire } from "node:module";
import { parseArgs } from "node:util";
import { gcEvents } from "../gc/trace.mjs";

const { values: args } = parseArgs({
  options: {
    rate: { type: "string", default: "500" },
    seconds: { type: "string", default: "12" },
    "semi-space": { type: "string" },
    role: { type: "string" },
    kind: { type: "string" },
    kinds: { type: "string", default: "http1,http2,grpc" },
    port: { type: "string" },
  },
});
const require = createRequire(import.meta.url);
// undici: an undici Agent's request() over HTTP/1.1, as the router calls providers (undici_signal: with an
// AbortSignal, as it does).
const kinds = args.kinds.split(",");
const path = "/bench.v1.Echo/Echo";
const id = (x) => x;
const def = {
  Echo: {
    path,
    requestStream: false,
    responseStream: true,
    requestSerialize: id,
    requestDeserialize: id,
    responseSerialize: id,
    responseDeserialize: id,
  },
};
const answer = Buffer.from("hello world ".repeat(10));
const body = Buffer.alloc(300, 120);

async function serve(kind) {
  if (kind === "http1" || kind.startsWith("undici")) {
    const http = await import("node:http");
    const server = http.createServer((req, res) => {
      req.resume();
      req.on("end", () => res.end(answer));
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    return server.address().port;
  }
  if (kind === "http2") {
    const http2 = await import("node:http2");
    const server = http2.createServer();
    server.on("stream", (stream) => {
      stream.respond({ ":status": 200 });
      stream.end(answer);
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    return server.address().port;
  }
  const grpc = require("@grpc/grpc-js");
  const server = new grpc.Server();
  server.addService(def, {
    Echo: (call) => {
      call.write(answer);
      call.end();
    },
  });
  return new Promise((res, rej) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))),
  );
}

async function client(kind, port, rate, seconds) {
  let one;
  if (kind === "http1") {
    const http = await import("node:http");
    const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
    one = () =>
      new Promise((res) => {
        const req = http.request({ host: "127.0.0.1", port, method: "POST", path, agent }, (r) => {
          r.resume();
          r.on("end", res);
        });
        req.on("error", res);
        req.end(body);
      });
  } else if (kind.startsWith("undici")) {
    const { Agent } = require("undici");
    const agent = new Agent({ connections: 32 });
    const withSignal = kind === "undici_signal";
    one = async () => {
      const ac = withSignal ? new AbortController() : undefined;
      const r = await agent.request({
        origin: `http://127.0.0.1:${port}`,
        path,
        method: "POST",
        body,
        signal: ac?.signal,
      });
      await r.body.dump();
    };
  } else if (kind === "http2") {
    const http2 = await import("node:http2");
    const session = http2.connect(`http://127.0.0.1:${port}`);
    one = () =>
      new Promise((res) => {
        const req = session.request({ ":path": path, ":method": "POST" });
        req.on("data", () => {});
        req.on("end", res);
        req.on("error", res);
        req.end(body);
      });
  } else {
    const grpc = require("@grpc/grpc-js");
    const Client = grpc.makeGenericClientConstructor(def, "Echo");
    const c = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    one = async () => {
      for await (const _ of c.Echo(body, { deadline: new Date(Date.now() + 60_000) })) {
      }
    };
  }
  // Paced: a batch every 10 ms, so the rate holds whatever the latency.
  const perTick = rate / 100;
  let owed = 0;
  const timer = setInterval(() => {
    owed += perTick;
    for (; owed >= 1; owed--) one().catch(() => {});
  }, 10);
  setTimeout(() => {
    clearInterval(timer);
    process.exit(0);
  }, seconds * 1000);
}

if (args.role === "server") {
  const port = await serve(args.kind);
  process.send?.(port);
} else if (args.role === "client") {
  await client(args.kind, Number(args.port), Number(args.rate), Number(args.seconds));
} else {
  const flags = args["semi-space"] ? [`--max-semi-space-size=${args["semi-space"]}`] : [];
  const self = new URL(import.meta.url).pathname;
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
  const parts = [];
  for (const kind of kinds) {
    const server = spawn(process.execPath, [self, "--role", "server", "--kind", kind], {
      stdio: ["ignore", "ignore", "inherit", "ipc"],
    });
    const [port] = await once(server, "message");
    const c = spawn(
      process.execPath,
      [
        ...flags,
        "--trace-gc-nvp",
        self,
        "--role",
        "client",
        "--kind",
        kind,
        "--port",
        String(port),
        "--rate",
        args.rate,
        "--seconds",
        args.seconds,
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    let out = "";
    c.stdout.setEncoding("utf8").on("data", (d) => {
      out += d;
    });
    await once(c, "exit");
    server.kill();
    // A scavenge's line: "[pid:isolate:0] <ms> ms: pause=… gc=s … promoted=… new_space_survived=…"; the ones after
    // the warm-up count.
    const after = gcEvents(out).filter((g) => g.young && g.atMs >= 3000);
    const kb = (k) => (median(after.map((g) => g[k])) / 1024).toFixed(0);
    parts.push(
      `${kind}_survived_kb=${kb("new_space_survived")} ${kind}_promoted_kb=${kb("promoted")} ${kind}_pause_ms=${median(after.map((g) => g.pause)).toFixed(1)} ${kind}_scavenges=${after.length}`,
    );
  }
  console.log(
    `gc-promotion rate=${args.rate}${flags.length ? ` semi_space_mb=${args["semi-space"]}` : ""} ${parts.join(" ")}`,
  );
}
