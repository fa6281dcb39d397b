import type { ChatResponse } from "@tokenmesh/proto/common/v1/chat";
import type { RequestContext } from "@tokenmesh/proto/common/v1/context";
import { AppError } from "@tokenmesh/runtime";
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { ChatFlow } from "../domain/chat-flow.js";
import { guardWholeAnswer } from "../domain/guarded-output.js";
import type { Guard, RouteHints } from "../domain/ports.js";
import { toOpenAICompletion } from "./openai.mapping.js";

/** A speculative request's upgrade as the router keeps it. */
export interface Upgrade {
  /** "pending", "ready" or "failed". */
  status: string;
  response: ChatResponse | undefined;
  model: string;
  error: string;
}

/** Where upgrades are fetched from (the router's GetUpgrade): NOT_FOUND for an unknown id or another key's. */
export interface Upgrades {
  getUpgrade(ctx: RequestContext, id: string, signal: AbortSignal): Promise<Upgrade>;
}

/** Where a client fetches the slow answer of a speculative request. */
export function upgradeUrl(id: string): string {
  return `/v1/chat/completions/${encodeURIComponent(id)}/upgrade`;
}

/**
 * Routing hints from the request headers: `x-tokenmesh-route: cheapest|fastest|best` (for `auto`) and
 * `x-tokenmesh-speculative: <fast model>`. Undefined when neither is sent; an unknown preference is refused.
 */
export function routeHints(req: FastifyRequest): RouteHints | undefined {
  const one = (name: string) => {
    const v = req.headers[name];
    return (Array.isArray(v) ? v[0] : v)?.trim() || undefined;
  };
  const prefer = one("x-tokenmesh-route");
  const speculativeModel = one("x-tokenmesh-speculative");
  if (prefer !== undefined && !["cheapest", "fastest", "best"].includes(prefer)) {
    throw new AppError("INVALID_ARGUMENT", "x-tokenmesh-route must be cheapest, fastest or best", {
      param: "x-tokenmesh-route",
      reason: "invalid_value",
    });
  }
  return prefer === undefined && speculativeModel === undefined ? undefined : { prefer, speculativeModel };
}

/**
 * The last SSE event of a speculative stream, before `data: [DONE]`: a chunk without choices (as the usage chunk
 * is, so OpenAI clients read past it) naming the upgrade.
 */
export function upgradeEvent(id: string): string {
  const event = {
    id,
    object: "chat.completion.chunk",
    created: Math.floor(Date.now() / 1000),
    model: "",
    choices: [],
    tokenmesh_upgrade: { id, url: upgradeUrl(id) },
  };
  return `data: ${JSON.stringify(event)}\n\n`;
}

/**
 * `GET /v1/chat/completions/{id}/upgrade`: the slow model's answer of a speculative request, for the key that made
 * it (anyone else gets 404, as for an unknown or expired id). 200 with a chat completion once ready (passed
 * through the guard's output check, like any answer); 202 `{ status: "pending" }` while the slow model works;
 * 502 when it failed.
 */
export function registerUpgradeRoutes(
  app: FastifyInstance,
  deps: { flow: ChatFlow; upgrades: Upgrades; guard: Guard },
): void {
  app.get<{ Params: { id: string } }>("/v1/chat/completions/:id/upgrade", async (req, reply) => {
    const principal = await deps.flow.authenticate(req.headers.authorization);
    const ctx: RequestContext = {
      requestId: req.id,
      keyId: principal.keyId,
      team: principal.team,
      user: principal.user,
      priority: 0,
    };
    const signal = AbortSignal.timeout(10_000);
    const upgrade = await deps.upgrades.getUpgrade(ctx, req.params.id, signal);
    if (upgrade.status === "pending") return reply.code(202).send({ id: req.params.id, status: "pending" });
    if (upgrade.status !== "ready" || upgrade.response === undefined) {
      throw new AppError("UNAVAILABLE", `The upgrade's model failed: ${upgrade.error || "no answer"}`, {
        origin: "upstream",
        reason: "upgrade_failed",
      });
    }
    const response = upgrade.response;
    await guardWholeAnswer(deps.guard, ctx, response, signal);
    return reply.send({ ...toOpenAICompletion(response), id: req.params.id });
  });
}
