import { randomUUID } from "node:crypto";
import type { GatewayServiceService } from "@tokenmesh/proto/gateway/v1/gateway";
import type { CallContext, Handlers } from "@tokenmesh/runtime";
import type { ChatFlow } from "../domain/chat-flow.js";
import type { Router } from "../domain/ports.js";

function authorization(ctx: CallContext): string | undefined {
  const v = ctx.metadata.get("authorization")[0];
  return v === undefined ? undefined : String(v);
}

function requestId(ctx: CallContext): string {
  const v = ctx.metadata.get("x-request-id")[0];
  return typeof v === "string" && /^[\w.:-]{1,128}$/.test(v) ? v : `req_${randomUUID().replaceAll("-", "")}`;
}

/** The public gRPC API: the same flow and errors as HTTP, with gRPC status codes. */
export function gatewayHandlers(deps: { flow: ChatFlow; router: Router }): Handlers<typeof GatewayServiceService> {
  const { flow } = deps;
  return {
    async chat(request, ctx) {
      const { response } = await flow.complete({
        authorization: authorization(ctx),
        requestId: requestId(ctx),
        request: { ...request, stream: false },
        signal: ctx.signal,
        endpoint: "chat",
      });
      return response;
    },

    async *chatStream(request, ctx) {
      const started = await flow.start({
        authorization: authorization(ctx),
        requestId: requestId(ctx),
        request: { ...request, stream: true },
        signal: ctx.signal,
        endpoint: "chat",
      });
      yield* started.chunks;
    },

    async embed(request, ctx) {
      const { response } = await flow.embed({
        authorization: authorization(ctx),
        requestId: requestId(ctx),
        request,
        signal: ctx.signal,
      });
      return response;
    },

    async listModels(_req, ctx) {
      const principal = await flow.authenticate(authorization(ctx));
      const models = await deps.router.listModels(ctx.signal);
      return {
        models:
          principal.admin || principal.models.length === 0
            ? models
            : models.filter(
                (m) => principal.models.includes(m.id) || m.aliases.some((a) => principal.models.includes(a)),
              ),
      };
    },
  };
}
