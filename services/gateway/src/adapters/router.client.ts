import type { ChatRequest, EmbedRequest, ModelInfo } from "@tokenmesh/proto/common/v1/chat";
import type { RequestContext } from "@tokenmesh/proto/common/v1/context";
import {
  CacheKind,
  type RouteRequest,
  type RouteResponse,
  RouterServiceClient,
  RouterServiceService,
} from "@tokenmesh/proto/router/v1/router";
import {
  type CallParams,
  callStream,
  callUnary,
  createGrpcClient,
  createSharedStreams,
  type MuxClient,
} from "@tokenmesh/runtime";
import type { RouteEvent, RouteHints, Router } from "../domain/ports.js";
import type { Upgrade, Upgrades } from "../http/upgrade.routes.js";

function cacheKindName(kind: CacheKind): string {
  if (kind === CacheKind.CACHE_KIND_EXACT) return "exact";
  if (kind === CacheKind.CACHE_KIND_SEMANTIC) return "semantic";
  return "";
}

/**
 * The router over gRPC. Chat requests share `streams` long-lived RouteStream streams (one HTTP/2 stream per request
 * cost more CPU than the routing, bench/gateway/README.md); a router that does not know RouteStream (an older
 * release) is called with Route, a call per request, and so is every request with `streams: 0`.
 */
export class GrpcRouter implements Router, Upgrades {
  private readonly client: RouterServiceClient;
  private readonly mux: MuxClient<RouteRequest, RouteResponse> | undefined;

  constructor(address: string, options: { streams?: number } = {}) {
    this.client = createGrpcClient(RouterServiceClient, address);
    const streams = options.streams ?? 4;
    if (streams > 0) {
      this.mux = createSharedStreams(RouterServiceClient, address, this.client, {
        path: RouterServiceService.route.path,
        method: RouterServiceService.routeStream,
        fallback: (req: RouteRequest, params: CallParams) => this.callRoute(req, params),
        streams,
      });
    }
  }

  private callRoute(req: RouteRequest, params: CallParams): AsyncIterable<RouteResponse> {
    return callStream(this.client.route.bind(this.client), req, params);
  }

  async *route(
    ctx: RequestContext,
    request: ChatRequest,
    signal: AbortSignal,
    hints?: RouteHints,
  ): AsyncIterable<RouteEvent> {
    const req: RouteRequest = {
      context: ctx,
      request,
      hints: { prefer: hints?.prefer ?? "", speculativeModel: hints?.speculativeModel ?? "" },
      // The route comes with the first chunk (a whole answer is one message); a router of an earlier release
      // ignores this and sends it alone, which reads the same here.
      routeWithFirstChunk: true,
      // Chunks the router has at once come in one message (an earlier router sends one each: the same here).
      batchChunks: true,
    };
    const events = this.mux === undefined ? this.callRoute(req, { signal }) : this.mux.call(req, { signal });
    for await (const ev of events) {
      const route = ev.route ?? ev.chunkRoute;
      if (route === undefined) yield { chunk: ev.chunk };
      else yield { route: { ...route, cacheKind: cacheKindName(route.cacheKind) }, chunk: ev.chunk };
      for (const chunk of ev.moreChunks?.chunks ?? []) yield { chunk };
    }
  }

  async embed(ctx: RequestContext, request: EmbedRequest, signal: AbortSignal) {
    const res = await callUnary(
      this.client.embed.bind(this.client),
      { context: ctx, request },
      { signal, deadlineMs: 60_000 },
    );
    return {
      response: res.response ?? { model: request.model, data: [], usage: undefined },
      model: res.route?.model ?? request.model,
      provider: res.route?.provider ?? "",
    };
  }

  async getUpgrade(ctx: RequestContext, id: string, signal: AbortSignal): Promise<Upgrade> {
    const res = await callUnary(
      this.client.getUpgrade.bind(this.client),
      { context: ctx, upgradeId: id },
      { signal, deadlineMs: 5_000 },
    );
    return { status: res.status, response: res.response, model: res.route?.model ?? "", error: res.error };
  }

  async listModels(signal: AbortSignal): Promise<ModelInfo[]> {
    const res = await callUnary(this.client.listModels.bind(this.client), {}, { signal, deadlineMs: 5_000 });
    return res.models;
  }

  close(): void {
    this.mux?.close();
    this.client.close();
  }
}
