import { AppError, toHttpError } from "@tokenmesh/runtime";
import type { FastifyInstance, FastifyReply } from "fastify";
import type { ChatFlow, RateInfo } from "../domain/chat-flow.js";
import type { Router } from "../domain/ports.js";
import { statedPriority } from "../domain/priority.js";
import { routeHeaders } from "../domain/route-headers.js";
import { metrics } from "../metrics.js";
import { toChatRequest, toOpenAIChunk, toOpenAICompletion, toOpenAIEmbeddings } from "./openai.mapping.js";
import { ChatCompletionBody, EmbeddingsBody } from "./openai.schema.js";
import { parseBody } from "./parse-body.js";
import { streamWriter, whenWritable } from "./stream-write.js";
import { routeHints, upgradeEvent } from "./upgrade.routes.js";

function rateHeaders(rate: RateInfo | undefined): Record<string, string> {
  if (!rate) return {};
  const h: Record<string, string> = {};
  const reset = `${Math.max(0, Math.ceil(rate.resetMs / 1000))}s`;
  if (rate.limitRequests > 0) {
    h["x-ratelimit-limit-requests"] = String(rate.limitRequests);
    h["x-ratelimit-remaining-requests"] = String(rate.remainingRequests);
    h["x-ratelimit-reset-requests"] = reset;
  }
  if (rate.limitTokens > 0) {
    h["x-ratelimit-limit-tokens"] = String(rate.limitTokens);
    h["x-ratelimit-remaining-tokens"] = String(rate.remainingTokens);
    h["x-ratelimit-reset-tokens"] = reset;
  }
  return h;
}

/** Aborts when the client goes away before the response is complete. */
export function clientGone(reply: FastifyReply): AbortSignal {
  const ac = new AbortController();
  reply.raw.on("close", () => {
    if (!reply.raw.writableFinished) ac.abort(new AppError("CANCELLED", "client closed the connection"));
  });
  return ac.signal;
}

/** The OpenAI-compatible API: chat completions (JSON and SSE), embeddings, models. */
export function registerOpenAIRoutes(app: FastifyInstance, deps: { flow: ChatFlow; router: Router }): void {
  const { flow } = deps;

  app.post("/v1/chat/completions", async (req, reply) => {
    const body = parseBody(ChatCompletionBody, req.body);
    const request = toChatRequest(body);
    const signal = clientGone(reply);
    const call = {
      authorization: req.headers.authorization,
      requestId: req.id,
      request,
      signal,
      endpoint: "chat" as const,
      hints: routeHints(req),
      priority: statedPriority(req.headers["x-tokenmesh-priority"]),
    };
    if (!request.stream) {
      const { response, rate, route } = await flow.complete(call);
      return reply.headers({ ...rateHeaders(rate), ...routeHeaders(route) }).send(toOpenAICompletion(response));
    }
    const started = await flow.start(call);
    const includeUsage = request.streamOptions?.includeUsage === true;
    reply.hijack();
    const raw = reply.raw;
    // No explicit `connection` header: Node keeps the socket alive, or closes it after the stream when the
    // client sent `Connection: close`.
    raw.writeHead(200, {
      ...(reply.getHeaders() as Record<string, string>),
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      ...rateHeaders(started.rate),
      ...routeHeaders(started.route),
    });
    const write = streamWriter(raw);
    try {
      for await (const chunk of started.chunks) {
        if (chunk.choices.length === 0 && !includeUsage) continue;
        // A client that reads slower than the answer comes holds the stream back rather than filling memory.
        if (!write(`data: ${JSON.stringify(toOpenAIChunk(chunk, includeUsage))}\n\n`)) await whenWritable(raw);
      }
      if (started.route.upgradeId) write(upgradeEvent(started.route.upgradeId));
      raw.end("data: [DONE]\n\n");
      metrics.requests.inc({ api: "http", endpoint: "chat", status: "200" });
      metrics.duration.observe({ api: "http", endpoint: "chat" }, reply.elapsedTime / 1000);
    } catch (err) {
      // The status line is gone: end with an error event and no [DONE], so clients see a failed stream.
      const mapped = toHttpError(err, req.id);
      if (!raw.destroyed) raw.end(`data: ${JSON.stringify(mapped.body)}\n\n`);
      metrics.requests.inc({ api: "http", endpoint: "chat", status: "stream_error" });
    }
  });

  app.post("/v1/embeddings", async (req, reply) => {
    const body = parseBody(EmbeddingsBody, req.body);
    const signal = clientGone(reply);
    const { response, rate } = await flow.embed({
      authorization: req.headers.authorization,
      requestId: req.id,
      priority: statedPriority(req.headers["x-tokenmesh-priority"]),
      signal,
      request: {
        model: body.model,
        input: typeof body.input === "string" ? [body.input] : body.input,
        user: body.user ?? "",
        ...(body.dimensions !== undefined ? { dimensions: body.dimensions } : {}),
      },
    });
    return reply.headers(rateHeaders(rate)).send(toOpenAIEmbeddings(response, body.encoding_format));
  });

  app.get("/v1/models", async (req, reply) => {
    const principal = await flow.authenticate(req.headers.authorization);
    const models = await deps.router.listModels(AbortSignal.timeout(5_000));
    const allowed =
      principal.admin || principal.models.length === 0
        ? models
        : models.filter((m) => principal.models.includes(m.id) || m.aliases.some((a) => principal.models.includes(a)));
    return reply.send({
      object: "list",
      data: allowed.map((m) => ({ id: m.id, object: "model", created: 0, owned_by: m.ownedBy || m.engine })),
    });
  });
}
