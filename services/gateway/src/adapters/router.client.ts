import type { ChatRequest, EmbedRequest, ModelInfo } from "@tokenmesh/proto/common/v1/chat";
import type { RequestContext } from "@tokenmesh/proto/common/v1/context";
import { RouterServiceClient } from "@tokenmesh/proto/router/v1/router";
import { callStream, callUnary, createGrpcClient } from "@tokenmesh/runtime";
import type { RouteEvent, Router } from "../domain/ports.js";

/** The router over gRPC. */
export class GrpcRouter implements Router {
  private readonly client: RouterServiceClient;

  constructor(address: string) {
    this.client = createGrpcClient(RouterServiceClient, address);
  }

  async *route(ctx: RequestContext, request: ChatRequest, signal: AbortSignal): AsyncIterable<RouteEvent> {
    for await (const ev of callStream(this.client.route.bind(this.client), { context: ctx, request }, { signal })) {
      yield ev;
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

  async listModels(signal: AbortSignal): Promise<ModelInfo[]> {
    const res = await callUnary(this.client.listModels.bind(this.client), {}, { signal, deadlineMs: 5_000 });
    return res.models;
  }

  close(): void {
    this.client.close();
  }
}
