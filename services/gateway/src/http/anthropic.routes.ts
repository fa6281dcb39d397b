import type { Catalog } from "@tokenmesh/catalog";
import { AppError } from "@tokenmesh/runtime";
import type { Logger } from "@tokenmesh/telemetry";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { resolveModel } from "../domain/authenticate.js";
import type { ChatFlow, RateInfo } from "../domain/chat-flow.js";
import { statedPriority } from "../domain/priority.js";
import { routeHeaders } from "../domain/route-headers.js";
import { metrics } from "../metrics.js";
import {
  type AnthropicEvent,
  errorEvent,
  estimateInputTokens,
  MessagesStreamTranslator,
  messageId,
  sse,
  toAnthropicError,
  toAnthropicMessage,
  toChatRequest,
} from "./anthropic.mapping.js";
import { ANTHROPIC_VERSION, CountTokensBody, firstIssue, MessagesBody, servedVersion } from "./anthropic.schema.js";
import { type ErrorRenderer, errorHandler } from "./errors.js";
import { clientGone } from "./openai.routes.js";
import { parseBody } from "./parse-body.js";
import { streamWriter, whenWritable } from "./stream-write.js";

/** While a stream is open, a `ping` at least this often keeps idle proxies from closing it (Anthropic does too). */
const PING_INTERVAL_MS = 10_000;

const ENDPOINTS: Record<string, string> = {
  "/v1/messages": "messages",
  "/v1/messages/count_tokens": "count_tokens",
};

const anthropicErrors: ErrorRenderer = (err, requestId, status) => toAnthropicError(err, requestId, status);

/** Anthropic's rate-limit headers (`anthropic-ratelimit-*`, resets as RFC 3339 times) for the key's limits. */
function rateHeaders(rate: RateInfo | undefined): Record<string, string> {
  if (!rate) return {};
  const h: Record<string, string> = {};
  const reset = new Date(Date.now() + Math.max(0, rate.resetMs)).toISOString();
  if (rate.limitRequests > 0) {
    h["anthropic-ratelimit-requests-limit"] = String(rate.limitRequests);
    h["anthropic-ratelimit-requests-remaining"] = String(rate.remainingRequests);
    h["anthropic-ratelimit-requests-reset"] = reset;
  }
  if (rate.limitTokens > 0) {
    h["anthropic-ratelimit-tokens-limit"] = String(rate.limitTokens);
    h["anthropic-ratelimit-tokens-remaining"] = String(rate.remainingTokens);
    h["anthropic-ratelimit-tokens-reset"] = reset;
  }
  return h;
}

/**
 * The credential as ChatFlow reads it: Anthropic's `x-api-key: <key>` as `Bearer <key>`, else the `Authorization`
 * header as sent. `x-api-key` wins when both are present (it is the header Anthropic clients mean).
 */
function authorizationOf(req: FastifyRequest): string | undefined {
  const key = req.headers["x-api-key"];
  const value = Array.isArray(key) ? key[0] : key;
  return value !== undefined && value !== "" ? `Bearer ${value}` : req.headers.authorization;
}

/**
 * The Anthropic Messages API over the same ChatFlow as the OpenAI endpoint (keys, limits, budgets, guard, routing,
 * usage events with endpoint "messages", traces): `POST /v1/messages` (JSON, or SSE with Anthropic's events) and
 * `POST /v1/messages/count_tokens` (an estimate: no remote model's tokenizer is at hand). The routes live in their own
 * Fastify scope so that their errors, Fastify's own included, are worded as Anthropic's
 * `{ type: "error", error: { type, message } }`. Every response carries `request-id` (the minted request id) and
 * `anthropic-version` (the one asked for, 2023-06-01 when none was); versions before 2023-06-01 are refused.
 */
export function registerAnthropicRoutes(
  app: FastifyInstance,
  deps: { flow: ChatFlow; catalog: () => Catalog; logger: Logger },
): void {
  const { flow } = deps;
  void app.register(async (scope) => {
    scope.setErrorHandler(errorHandler(deps.logger, anthropicErrors));

    scope.addHook("onRequest", async (req, reply) => {
      reply.header("request-id", req.id);
      const asked = req.headers["anthropic-version"];
      const version = servedVersion(asked);
      reply.header("anthropic-version", version ?? ANTHROPIC_VERSION);
      if (version === undefined) {
        throw new AppError(
          "INVALID_ARGUMENT",
          `anthropic-version: '${String(asked)}' is not supported; send ${ANTHROPIC_VERSION} or a later version`,
          { param: "anthropic-version", reason: "invalid_version" },
        );
      }
    });
    // Streams count themselves (a hijacked reply has no onResponse).
    scope.addHook("onResponse", async (req, reply) => {
      const endpoint = ENDPOINTS[req.routeOptions.url ?? ""];
      if (!endpoint) return;
      metrics.requests.inc({ api: "http", endpoint, status: String(reply.statusCode) });
      metrics.duration.observe({ api: "http", endpoint }, reply.elapsedTime / 1000);
    });

    scope.post("/v1/messages", async (req, reply) => {
      const body = parseBody(MessagesBody, req.body, firstIssue);
      const request = toChatRequest(body);
      const signal = clientGone(reply);
      const call = {
        authorization: authorizationOf(req),
        requestId: req.id,
        request,
        signal,
        endpoint: "messages" as const,
        priority: statedPriority(req.headers["x-tokenmesh-priority"]),
      };
      if (!request.stream) {
        const { response, rate, route } = await flow.complete(call);
        return reply
          .headers({ ...rateHeaders(rate), ...routeHeaders(route) })
          .send(toAnthropicMessage(response, req.id));
      }
      const started = await flow.start(call);
      reply.hijack();
      const raw = reply.raw;
      raw.writeHead(200, {
        ...(reply.getHeaders() as Record<string, string>),
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache",
        ...rateHeaders(started.rate),
        ...routeHeaders(started.route),
      });
      const send = streamWriter(raw);
      /** False when the client's buffer is full: the caller waits for `whenWritable` before reading on. */
      const write = (events: AnthropicEvent[]): boolean =>
        events.length === 0 || raw.destroyed || send(events.map(sse).join(""));
      const ping = setInterval(() => write([{ event: "ping", data: { type: "ping" } }]), PING_INTERVAL_MS);
      ping.unref();
      const t = new MessagesStreamTranslator(messageId(req.id));
      try {
        for await (const chunk of started.chunks) {
          // A client that reads slower than the answer comes holds the stream back rather than filling memory.
          if (!write(t.push(chunk))) await whenWritable(raw);
        }
        write(t.end());
        raw.end();
        metrics.requests.inc({ api: "http", endpoint: "messages", status: "200" });
        metrics.duration.observe({ api: "http", endpoint: "messages" }, reply.elapsedTime / 1000);
      } catch (err) {
        // The status line is gone: an `error` event and no message_stop, so clients see a failed stream.
        if (!raw.destroyed) raw.end(sse(errorEvent(err, req.id)));
        metrics.requests.inc({ api: "http", endpoint: "messages", status: "stream_error" });
      } finally {
        clearInterval(ping);
      }
    });

    scope.post("/v1/messages/count_tokens", async (req, reply) => {
      const body = parseBody(CountTokensBody, req.body, firstIssue);
      const principal = await flow.authenticate(authorizationOf(req));
      // The same model checks as a request (unknown: 404, not allowed for this key: 403); nothing is spent or held.
      resolveModel(deps.catalog(), principal, body.model, "chat");
      return reply.header("x-tokenmesh-token-count", "estimate").send({ input_tokens: estimateInputTokens(body) });
    });
  });
}
