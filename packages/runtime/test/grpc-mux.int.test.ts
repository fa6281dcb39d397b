import { credentials } from "@grpc/grpc-js";
import {
  RouteRequest,
  RouteResponse,
  RouterServiceClient,
  RouterServiceService,
  type RouteStreamRequest,
  type RouteStreamResponse,
} from "@tokenmesh/proto/router/v1/router";
import { createLogger, rpcMetrics } from "@tokenmesh/telemetry";
import { waitFor } from "@tokenmesh/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AppError,
  type CallContext,
  callStream,
  createGrpcClient,
  GrpcServer,
  Multiplexed,
  MuxClient,
  PEER_UNREACHABLE,
} from "../src/index.js";

// The multiplexed gateway → router hop (grpc-mux.ts) against a real GrpcServer on loopback: RouterService with a
// test double of Route whose behaviour the requested model name picks.

const logger = createLogger({ service: "mux-test", level: "silent" });
const WINDOW = 8;

/** What the handler saw, per request name. */
const seen = {
  abortReasons: new Map<string, unknown>(),
  yielded: new Map<string, number>(),
  release: new Map<string, () => void>(),
};

const message = (model: string) => RouteResponse.fromPartial({ route: { model } });

async function* route(req: RouteRequest, ctx: CallContext): AsyncGenerator<RouteResponse> {
  const name = req.request?.model ?? "";
  const [kind, arg = ""] = name.split(":");
  const onAbort = () => seen.abortReasons.set(name, ctx.signal.reason);
  ctx.signal.addEventListener("abort", onAbort, { once: true });
  if (kind === "echo") {
    for (let i = 0; i < Number(arg); i++) {
      // A later turn for each message, as a provider's stream would deliver them.
      await new Promise((r) => setImmediate(r));
      yield message(`${name}#${i}`);
    }
  } else if (kind === "fail") {
    yield message("before the failure");
    throw new AppError("RESOURCE_EXHAUSTED", "the provider is rate limiting", {
      reason: "rate_limited",
      retryAfterMs: 1_500,
      upstreamStatus: 429,
      origin: "upstream",
    });
  } else if (kind === "hang") {
    await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve, { once: true }));
  } else if (kind === "held") {
    yield message(`${name}#start`);
    await new Promise<void>((resolve) => seen.release.set(name, resolve));
    yield message(`${name}#end`);
  } else if (kind === "flood") {
    for (let i = 0; i < Number(arg); i++) {
      seen.yielded.set(name, i + 1);
      yield message(`${i}`);
    }
  }
}

const unused = async () => {
  throw new AppError("INTERNAL", "not used here");
};

function startServer(options: { multiplexed: boolean }) {
  const server = new GrpcServer({ logger });
  const { routeStream: _, ...plain } = RouterServiceService;
  const handlers = { route, embed: unused, listModels: unused, getUpgrade: unused };
  if (options.multiplexed) {
    server.add(RouterServiceService, {
      ...handlers,
      routeStream: new Multiplexed<RouteStreamRequest, RouteStreamResponse>(RouterServiceService.route.path, route),
    });
  } else server.add(plain, handlers);
  return server;
}

function connect(address: string, streams = 4, keepaliveMs = 30_000) {
  const client = createGrpcClient(RouterServiceClient, address, { "grpc.keepalive_time_ms": keepaliveMs });
  const plain = new RouterServiceClient(address, credentials.createInsecure(), {
    channelOverride: client.getChannel(),
  });
  let fallbacks = 0;
  const mux = new MuxClient<RouteRequest, RouteResponse>({
    path: RouterServiceService.route.path,
    method: RouterServiceService.routeStream,
    client: plain,
    fallback: (req, params) => {
      fallbacks++;
      return callStream(client.route.bind(client), req, params);
    },
    streams,
    window: WINDOW,
  });
  return {
    mux,
    fallbacks: () => fallbacks,
    close: () => {
      mux.close();
      client.close();
    },
  };
}

const request = (model: string): RouteRequest =>
  RouteRequest.fromPartial({ request: { model, messages: [] }, routeWithFirstChunk: false, batchChunks: false });

async function collect(it: AsyncIterable<RouteResponse>): Promise<string[]> {
  const out: string[] = [];
  for await (const m of it) out.push(m.route?.model ?? "");
  return out;
}

async function counter(
  name: "clientHandled" | "serverHandled" | "clientUnsharedCalls" | "clientSharedStreams",
  code?: string,
): Promise<number> {
  const metric = await rpcMetrics[name].get();
  return metric.values
    .filter((v) => {
      const labels: Record<string, string | number | undefined> = v.labels;
      return labels.method === "Route" && (code === undefined || labels.code === code);
    })
    .reduce((s, v) => s + v.value, 0);
}

describe("multiplexed calls", () => {
  let server: GrpcServer;
  let address: string;
  let client: ReturnType<typeof connect>;

  beforeAll(async () => {
    server = startServer({ multiplexed: true });
    address = `127.0.0.1:${await server.listen("127.0.0.1", 0)}`;
    server.setServing(true);
    client = connect(address);
  });

  afterAll(async () => {
    client.close();
    await server.shutdown(1_000);
  });

  it("answers many concurrent calls on at most `streams` streams, each its own messages in order", async () => {
    const clientOk = await counter("clientHandled", "OK");
    const serverOk = await counter("serverHandled", "OK");
    const answers = await Promise.all(
      Array.from({ length: 200 }, (_, i) => collect(client.mux.call(request(`echo:${1 + (i % 5)}:${i}`)))),
    );
    answers.forEach((got, i) => {
      const name = `echo:${1 + (i % 5)}:${i}`;
      expect(got).toEqual(Array.from({ length: 1 + (i % 5) }, (_, k) => `${name}#${k}`));
    });
    expect(client.mux.openStreams).toBeGreaterThan(0);
    expect(client.mux.openStreams).toBeLessThanOrEqual(4);
    expect(await counter("clientSharedStreams")).toBe(client.mux.openStreams);
    // Each call is measured as a Route call of its own, on both sides.
    expect((await counter("clientHandled", "OK")) - clientOk).toBe(200);
    expect((await counter("serverHandled", "OK")) - serverOk).toBe(200);
  });

  it("carries the server's error with its detail, after the messages sent before it", async () => {
    const got: string[] = [];
    const err = await (async () => {
      for await (const m of client.mux.call(request("fail"))) got.push(m.route?.model ?? "");
    })().catch((e) => e);
    expect(got).toEqual(["before the failure"]);
    expect(err).toBeInstanceOf(AppError);
    expect(err).toMatchObject({
      code: "RESOURCE_EXHAUSTED",
      reason: "rate_limited",
      retryAfterMs: 1_500,
      upstreamStatus: 429,
      origin: "upstream",
    });
  });

  it("cancels one call at the server when its signal aborts, and the other calls on the stream go on", async () => {
    const ctrl = new AbortController();
    const hanging = collect(client.mux.call(request("hang:a"), { signal: ctrl.signal }));
    await waitFor(async () => client.mux.openStreams > 0);
    const other = collect(client.mux.call(request("echo:3:b")));
    setTimeout(() => ctrl.abort(), 50);
    await expect(hanging).rejects.toMatchObject({ code: "CANCELLED" });
    expect(await other).toEqual(["echo:3:b#0", "echo:3:b#1", "echo:3:b#2"]);
    await waitFor(async () => seen.abortReasons.has("hang:a"), { description: "the server's handler aborted" });
    expect(seen.abortReasons.get("hang:a")).toMatchObject({ code: "CANCELLED" });
  });

  it("fails only its own call for a request that cannot be encoded", async () => {
    const other = collect(client.mux.call(request("echo:3:enc")));
    const broken = { ...request("bad"), request: { model: "bad", messages: 42 } } as unknown as RouteRequest;
    await expect(collect(client.mux.call(broken))).rejects.toMatchObject({ code: "INTERNAL" });
    expect(await other).toEqual(["echo:3:enc#0", "echo:3:enc#1", "echo:3:enc#2"]);
  });

  it("cancels the call at the server when the reader stops reading (break)", async () => {
    for await (const _ of client.mux.call(request("held:break"))) break;
    await waitFor(async () => seen.abortReasons.has("held:break"), { description: "the server's handler aborted" });
    expect(seen.abortReasons.get("held:break")).toMatchObject({ code: "CANCELLED" });
  });

  it("gives each call its deadline, at the server and at the client", async () => {
    const err = await collect(client.mux.call(request("hang:deadline"), { deadlineMs: 100 })).catch((e) => e);
    expect(err).toMatchObject({ code: "DEADLINE_EXCEEDED" });
    await waitFor(async () => seen.abortReasons.has("hang:deadline"), { description: "the server's deadline" });
    expect(seen.abortReasons.get("hang:deadline")).toMatchObject({ code: "DEADLINE_EXCEEDED" });
  });

  it("holds a call's answer at its window while its reader is slow, without stalling the other calls", async () => {
    const flood = client.mux.call(request("flood:500"))[Symbol.asyncIterator]();
    expect((await flood.next()).value?.route?.model).toBe("0");
    // The other calls on the same streams are answered while the flood's reader reads nothing.
    const others = await Promise.all(
      Array.from({ length: 20 }, (_, i) => collect(client.mux.call(request(`echo:2:w${i}`)))),
    );
    expect(others.every((o) => o.length === 2)).toBe(true);
    // The server sent at most its window before credit (one more may be in the handler's hand).
    expect(seen.yielded.get("flood:500")).toBeLessThanOrEqual(WINDOW + 2);
    const rest: string[] = [];
    for (let r = await flood.next(); !r.done; r = await flood.next()) rest.push(r.value.route?.model ?? "");
    expect(rest).toEqual(Array.from({ length: 499 }, (_, i) => `${i + 1}`));
  });

  it("drains at shutdown: the calls in flight finish, then the server stops without forcing", async () => {
    const drainServer = startServer({ multiplexed: true });
    const drainAddress = `127.0.0.1:${await drainServer.listen("127.0.0.1", 0)}`;
    const c = connect(drainAddress);
    try {
      const held = c.mux.call(request("held:drain"))[Symbol.asyncIterator]();
      expect((await held.next()).value?.route?.model).toBe("held:drain#start");
      const started = Date.now();
      const stopped = drainServer.shutdown(10_000);
      await new Promise((r) => setTimeout(r, 100));
      seen.release.get("held:drain")?.();
      expect((await held.next()).value?.route?.model).toBe("held:drain#end");
      expect((await held.next()).done).toBe(true);
      await stopped;
      // Not the 10 s grace: the stream ended once its call had.
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(seen.abortReasons.has("held:drain")).toBe(false);
      await waitFor(async () => c.mux.openStreams === 0, { description: "the drained stream closed" });
    } finally {
      c.close();
    }
  });

  it("fails the calls of a stream whose connection breaks, and reconnects for the next call", async () => {
    const s1 = startServer({ multiplexed: true });
    const port = await s1.listen("127.0.0.1", 0);
    // An in-process forceShutdown leaves the socket open: the client finds the connection gone at its next keepalive
    // ping (a killed process's socket closes at once; test/fault kills the router for real).
    const c = connect(`127.0.0.1:${port}`, 4, 500);
    try {
      const hanging = collect(c.mux.call(request("hang:broken")));
      await waitFor(async () => c.mux.openStreams > 0);
      await new Promise((r) => setTimeout(r, 50));
      s1.server.forceShutdown();
      const err = await hanging.catch((e) => e);
      expect(err).toMatchObject({ code: expect.stringMatching(/UNAVAILABLE|CANCELLED/) });
      const s2 = startServer({ multiplexed: true });
      await s2.listen("127.0.0.1", port);
      try {
        await waitFor(
          async () => {
            try {
              return (await collect(c.mux.call(request("echo:1:again")))).length === 1;
            } catch (e) {
              expect((e as AppError).reason).toBe(PEER_UNREACHABLE);
              return false;
            }
          },
          { timeoutMs: 10_000, description: "a call on the restarted server" },
        );
      } finally {
        await s2.shutdown(1_000);
      }
    } finally {
      c.close();
    }
  });
});

describe("a server that does not know the multiplexed method (an older release)", () => {
  it("gets the calls as Route calls of their own", async () => {
    const old = startServer({ multiplexed: false });
    const c = connect(`127.0.0.1:${await old.listen("127.0.0.1", 0)}`);
    try {
      expect(await collect(c.mux.call(request("echo:2:old")))).toEqual(["echo:2:old#0", "echo:2:old#1"]);
      expect(await collect(c.mux.call(request("echo:1:old2")))).toEqual(["echo:1:old2#0"]);
      expect(c.fallbacks()).toBe(2);
      expect(await counter("clientUnsharedCalls")).toBeGreaterThanOrEqual(2);
      const err = await collect(c.mux.call(request("fail"))).catch((e) => e);
      expect(err).toMatchObject({ code: "RESOURCE_EXHAUSTED", reason: "rate_limited" });
    } finally {
      c.close();
      await old.shutdown(1_000);
    }
  });
});
