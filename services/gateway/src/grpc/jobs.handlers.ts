import type { GatewayServiceService } from "@tokenmesh/proto/gateway/v1/gateway";
import { AppError, type CallContext, type Handlers } from "@tokenmesh/runtime";
import type { JobService } from "../jobs/service.js";
import { jobMessage } from "../jobs/view.js";

type JobMethods = "submitJob" | "getJob" | "cancelJob" | "watchJob";

function authorization(ctx: CallContext): string | undefined {
  const v = ctx.metadata.get("authorization")[0];
  return v === undefined ? undefined : String(v);
}

/**
 * The async jobs API on gRPC, the twin of HTTP /v1/jobs: the same service, ownership (another key's job is
 * NOT_FOUND) and errors. `WatchJob` sends the job at once and at every change of status, and ends after the final
 * state, which carries the result.
 */
export function jobHandlers(deps: { jobs: JobService }): Pick<Handlers<typeof GatewayServiceService>, JobMethods> {
  const { jobs } = deps;
  return {
    async submitJob(request, ctx) {
      if (!request.chat && !request.embed) {
        throw new AppError("INVALID_ARGUMENT", "Set the job's chat or embed request", { param: "request" });
      }
      const record = await jobs.submit(authorization(ctx), {
        endpoint: request.chat ? "chat" : "embeddings",
        batch: false,
        chat: request.chat ? [{ ...request.chat, stream: false }] : [],
        embed: request.embed && !request.chat ? [request.embed] : [],
        encodingFormat: "float",
        callbackUrl: request.callbackUrl,
        metadata: request.metadata,
      });
      return jobMessage(record);
    },

    async getJob(request, ctx) {
      return jobMessage(await jobs.get(authorization(ctx), request.id));
    },

    async cancelJob(request, ctx) {
      return jobMessage(await jobs.cancel(authorization(ctx), request.id));
    },

    // made-once: jobHandlers runs once, at startup (scripts/check-closures.mjs).
    async *watchJob(request, ctx) {
      for await (const record of jobs.watch(authorization(ctx), request.id, ctx.signal)) {
        yield jobMessage(record);
      }
    },
  };
}
