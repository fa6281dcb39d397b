// The gateway's router port served in-process (see ./register.mjs). The router's app is built from its own
// createApp and config (its NATS, Redis, catalog, providers, breaker, served-usage reports: everything it does in its
// own process), and its RouterService handlers are taken as they are registered with its gRPC server, which still
// listens (on a free port) but is never called. What it leaves out is the hop: proto encoding, grpc-js, HTTP/2, the
// router's server span and its RPC metrics. Bench only.
import { Metadata } from "@grpc/grpc-js";
import { CacheKind, RouterServiceService } from "@tokenmesh/proto/router/v1/router";
import { GrpcServer, Lifecycle, parseEnv } from "@tokenmesh/runtime";
import { createLogger } from "@tokenmesh/telemetry";

const routerDist = new URL("../../../services/router/dist/", import.meta.url);
const { createApp } = await import(new URL("app.js", routerDist).href);
const { RouterConfigSchema } = await import(new URL("config.js", routerDist).href);

let captured;
const add = GrpcServer.prototype.add;
GrpcServer.prototype.add = function (definition, handlers) {
  if (definition === RouterServiceService) captured = handlers;
  return add.call(this, definition, handlers);
};

const cacheKindName = (kind) =>
  kind === CacheKind.CACHE_KIND_EXACT ? "exact" : kind === CacheKind.CACHE_KIND_SEMANTIC ? "semantic" : "";

/** Drop-in for the gateway's GrpcRouter (same constructor, same methods). */
export class GrpcRouter {
  constructor() {
    const config = parseEnv(RouterConfigSchema, { ...process.env, ROUTER_GRPC_PORT: "0", ROUTER_OPS_PORT: "0" });
    const logger = createLogger({ service: "tokenmesh-router-embedded", level: config.LOG_LEVEL });
    this.app = createApp(config, { logger, lifecycle: new Lifecycle({ logger, deadlineMs: 5_000 }) });
    if (captured === undefined) throw new Error("the router app registered no RouterService handlers");
    this.handlers = captured;
    this.started = this.app.start();
  }

  callContext(signal) {
    return { metadata: new Metadata(), signal, deadline: undefined, peer: "in-process", sendMetadata() {} };
  }

  async *route(ctx, request, signal, hints) {
    const req = {
      context: ctx,
      request,
      hints: { prefer: hints?.prefer ?? "", speculativeModel: hints?.speculativeModel ?? "" },
      routeWithFirstChunk: true,
      batchChunks: false,
    };
    for await (const ev of this.handlers.route(req, this.callContext(signal))) {
      const route = ev.route ?? ev.chunkRoute;
      if (route === undefined) yield { chunk: ev.chunk };
      else yield { route: { ...route, cacheKind: cacheKindName(route.cacheKind) }, chunk: ev.chunk };
    }
  }

  async embed(ctx, request, signal) {
    const res = await this.handlers.embed({ context: ctx, request }, this.callContext(signal));
    return {
      response: res.response ?? { model: request.model, data: [], usage: undefined },
      model: res.route?.model ?? request.model,
      provider: res.route?.provider ?? "",
    };
  }

  async getUpgrade(ctx, id, signal) {
    const res = await this.handlers.getUpgrade({ context: ctx, upgradeId: id }, this.callContext(signal));
    return { status: res.status, response: res.response, model: res.route?.model ?? "", error: res.error };
  }

  async listModels(signal) {
    await this.started;
    return (await this.handlers.listModels({}, this.callContext(signal))).models;
  }

  close() {
    void this.app.stop();
  }
}
