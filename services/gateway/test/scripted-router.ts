import { type ChatChunk, FinishReason, Role } from "@tokenmesh/proto/common/v1/chat";
import { type RouteRequest, type RouteResponse, RouterServiceService } from "@tokenmesh/proto/router/v1/router";
import { AppError, type CallContext, GrpcServer } from "@tokenmesh/runtime";
import type { Logger } from "@tokenmesh/telemetry";

/**
 * A stand-in RouterService for gateway tests: `route` as given (refused as not scripted by default); Embed and
 * GetUpgrade refused; ListModels empty (so the gateway's readiness check passes). Call `listen` on it.
 */
export function scriptedRouter(
  logger: Logger,
  route?: (req: RouteRequest, ctx: CallContext) => AsyncIterable<RouteResponse>,
): GrpcServer {
  const notScripted = () => new AppError("FAILED_PRECONDITION", "not scripted");
  const server = new GrpcServer({ logger });
  server.add(RouterServiceService, {
    route:
      route ??
      // biome-ignore lint/correctness/useYield: a test that routes nothing
      async function* () {
        throw notScripted();
      },
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
