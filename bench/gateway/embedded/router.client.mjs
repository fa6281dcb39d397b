// The gateway's router port served in-process (see ./register.mjs). The router's app is built from its own
// createApp and config (its NATS, Redis, catalog, providers, breaker, served-usage reports: everything it does in its
// own process), and its RouterService handlers are taken as they are registered with its gRPC server, which still
// listens (on a free port) but is never called. The gateway's own GrpcRouter does the rest (the request it sends,
// the events it makes of the answers); only its call is replaced. What this leaves out is the hop: proto encoding,
// grpc-js, HTTP/2, the mux, the router's server span and its RPC metrics. Embeddings, upgrades and the readiness
// check's model list are not on the measured path and still go to the router process over gRPC. Bench only.
import { Metadata } from "@grpc/grpc-js";
import { RouterServiceService } from "@tokenmesh/proto/router/v1/router";
import { GrpcServer, Lifecycle, parseEnv } from "@tokenmesh/runtime";
import { createLogger } from "@tokenmesh/telemetry";

const services = new URL("../../../services/", import.meta.url);
const { createApp } = await import(new URL("router/dist/app.js", services).href);
const { RouterConfigSchema } = await import(new URL("router/dist/config.js", services).href);
// Not redirected: the hook only redirects the gateway app's own import of this module.
const { GrpcRouter: ViaGrpc } = await import(new URL("gateway/dist/adapters/router.client.js", services).href);

let captured;
const add = GrpcServer.prototype.add;
GrpcServer.prototype.add = function (definition, handlers) {
  if (definition === RouterServiceService) captured = handlers;
  return add.call(this, definition, handlers);
};

/** Drop-in for the gateway's GrpcRouter: the same class, its Route calls answered by the router's handler here. */
export class GrpcRouter extends ViaGrpc {
  constructor(address) {
    // No shared streams: every chat request goes through callRoute, below.
    super(address, { streams: 0 });
    const config = parseEnv(RouterConfigSchema, { ...process.env, ROUTER_GRPC_PORT: "0", ROUTER_OPS_PORT: "0" });
    const logger = createLogger({ service: "tokenmesh-router-embedded", level: config.LOG_LEVEL });
    this.app = createApp(config, { logger, lifecycle: new Lifecycle({ logger, deadlineMs: 5_000 }) });
    if (captured === undefined) throw new Error("the router app registered no RouterService handlers");
    this.handlers = captured;
    this.started = this.app.start();
  }

  callRoute(req, params) {
    const ctx = {
      metadata: new Metadata(),
      signal: params.signal,
      deadline: undefined,
      peer: "in-process",
      sendMetadata() {},
    };
    // Chunks batch per event-loop turn only to save messages on the hop; here there is none.
    return this.handlers.route({ ...req, batchChunks: false }, ctx);
  }

  /** The gateway's readiness check: ready once the router app in this process has started. */
  async listModels(signal) {
    await this.started;
    return super.listModels(signal);
  }

  close() {
    super.close();
    void this.app.stop();
  }
}
