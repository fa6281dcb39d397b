import type { GatewayServiceService } from "@tokenmesh/proto/gateway/v1/gateway";
import { type CallContext, type Handlers, toAppError } from "@tokenmesh/runtime";
import { trace } from "@tokenmesh/telemetry";
import type { ChatFlow } from "../domain/chat-flow.js";
import type { Router } from "../domain/ports.js";
import { statedPriority } from "../domain/priority.js";
import { correlationId, mintRequestId } from "../domain/request-id.js";
import { routeHeaders } from "../domain/route-headers.js";
import { metrics } from "../metrics.js";
import { checkChatRequest, checkEmbedRequest } from "./request-checks.js";

/** Counts and times a gRPC front-door call like the HTTP ones (status = the AppError code, or OK). */
async function counted<T>(endpoint: string, run: () => Promise<T>): Promise<T> {
  const started = performance.now();
  let status = "OK";
  try {
    return await run();
  } catch (err) {
    status = toAppError(err).code;
    throw err;
  } finally {
    metrics.requests.inc({ api: "grpc", endpoint, status });
    metrics.duration.observe({ api: "grpc", endpoint }, (performance.now() - started) / 1000);
  }
}

function authorization(ctx: CallContext): string | undefined {
  const v = ctx.metadata.get("authorization")[0];
  return v === undefined ? undefined : String(v);
}

/**
 * Mints the call's request id. A client's `x-client-request-id` (or `x-request-id`) metadata is only a correlation
 * id, recorded on the call's span; it never becomes a key for limits, usage or the ledger.
 */
function requestId(ctx: CallContext): string {
  const clientId = correlationId(ctx.metadata.get("x-client-request-id")[0] ?? ctx.metadata.get("x-request-id")[0]);
  if (clientId !== undefined) trace.getActiveSpan()?.setAttribute("tokenmesh.client_request_id", clientId);
  return mintRequestId();
}

/**
 * The priority and wait bound of a call: the `x-tokenmesh-priority` metadata (else the request's `priority` field,
 * read by ChatFlow) and the call's deadline, which bounds a wait for a concurrency slot.
 */
function admissionOf(ctx: CallContext): { priority: number | undefined; deadlineAt: number | undefined } {
  const v = ctx.metadata.get("x-tokenmesh-priority")[0];
  return {
    priority: statedPriority(v === undefined ? undefined : String(v)),
    deadlineAt: ctx.deadline?.getTime(),
  };
}

/** The public gRPC API: the same flow and errors as HTTP, with gRPC status codes (jobs: jobs.handlers.ts). */
export function gatewayHandlers(deps: {
  flow: ChatFlow;
  router: Router;
}): Omit<Handlers<typeof GatewayServiceService>, "submitJob" | "getJob" | "cancelJob" | "watchJob"> {
  const { flow } = deps;
  return {
    async chat(request, ctx) {
      const { response, route } = await counted("chat", () => {
        checkChatRequest(request);
        return flow.complete({
          authorization: authorization(ctx),
          requestId: requestId(ctx),
          request: { ...request, stream: false },
          signal: ctx.signal,
          endpoint: "chat",
          ...admissionOf(ctx),
        });
      });
      // Why the router chose the model (and a cache or upgrade), as the HTTP API's x-tokenmesh-* headers.
      ctx.sendMetadata(routeHeaders(route));
      return response;
    },

    // made-once: gatewayHandlers runs once, at startup (scripts/check-closures.mjs).
    async *chatStream(request, ctx) {
      const began = performance.now();
      let status = "OK";
      try {
        checkChatRequest(request);
        const started = await flow.start({
          authorization: authorization(ctx),
          requestId: requestId(ctx),
          request: { ...request, stream: true },
          signal: ctx.signal,
          endpoint: "chat",
          ...admissionOf(ctx),
        });
        ctx.sendMetadata(routeHeaders(started.route));
        yield* started.chunks;
      } catch (err) {
        status = toAppError(err).code;
        throw err;
      } finally {
        metrics.requests.inc({ api: "grpc", endpoint: "chat", status });
        metrics.duration.observe({ api: "grpc", endpoint: "chat" }, (performance.now() - began) / 1000);
      }
    },

    async embed(request, ctx) {
      const { response } = await counted("embeddings", () => {
        checkEmbedRequest(request);
        return flow.embed({
          authorization: authorization(ctx),
          requestId: requestId(ctx),
          request,
          signal: ctx.signal,
          ...admissionOf(ctx),
        });
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
