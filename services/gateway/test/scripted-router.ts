import { type ChatChunk, FinishReason, Role } from "@tokenmesh/proto/common/v1/chat";
import {
  type RouteRequest,
  type RouteResponse,
  RouterServiceService,
  type RouteStreamRequest,
  type RouteStreamResponse,
} from "@tokenmesh/proto/router/v1/router";
import { AppError, type CallContext, GrpcServer, Multiplexed } from "@tokenmesh/runtime";
import type { Logger } from "@tokenmesh/telemetry";

/** `route` served as RouteStream too (the gateway's calls share streams), as the router serves it. */
export function routeStreamOf(
  route: (req: RouteRequest, ctx: CallContext) => AsyncIterable<RouteResponse>,
): Multiplexed<RouteStreamRequest, RouteStreamResponse> {
  return new Multiplexed<RouteStreamRequest, RouteStreamResponse>(RouterServiceService.route.path, route);
}

/**
 * A stand-in RouterService for gateway tests: `route` as given (refused as not scripted by default), on a call of
 * its own and on the shared streams; Embed and GetUpgrade refused; ListModels empty (so the gateway's readiness
 * check passes). Call `listen` on it.
 */
export function scriptedRouter(
  logger: Logger,
  route?: (req: RouteRequest, ctx: CallContext) => AsyncIterable<RouteResponse>,
): GrpcServer {
  const notScripted = () => new AppError("FAILED_PRECONDITION", "not scripted");
  const server = new GrpcServer({ logger });
  const routeCall =
    route ??
    // biome-ignore lint/correctness/useYield: a test that routes nothing
    async function* () {
      throw notScripted();
    };
  server.add(RouterServiceService, {
    route: routeCall,
    routeStream: routeStreamOf(routeCall),
    async embed() {
      throw notScripted();
    },
    async listModels() {
      return { models: [] };
    },
    async getUpgrade() {
      throw notScripted();
    },
  });
  return server;
}

/** One assistant chunk of a scripted answer from "test-model": `content`, and a finish reason on the last one. */
export function scriptedChunk(content: string, finishReason = FinishReason.FINISH_REASON_UNSPECIFIED): ChatChunk {
  return {
    id: "chatcmpl-scripted",
    created: 1,
    model: "test-model",
    choices: [{ index: 0, role: Role.ROLE_ASSISTANT, content, toolCalls: [], finishReason, refusal: "" }],
    usage: undefined,
  };
}
