import type { IncomingMessage } from "node:http";
import { AppError, toHttpError } from "@tokenmesh/runtime";
import type { Logger } from "@tokenmesh/telemetry";
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { metrics } from "../metrics.js";

/** Fastify's own errors (bad JSON, body too large, wrong content type) as AppErrors with the right status. */
function fromFastify(err: FastifyError): AppError | undefined {
  switch (err.code) {
    case "FST_ERR_CTP_INVALID_JSON_BODY":
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return new AppError("INVALID_ARGUMENT", "We could not parse the JSON body of your request.", {
        reason: "invalid_json",
      });
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return new AppError("INVALID_ARGUMENT", "The request body is too large.", { reason: "request_too_large" });
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return new AppError("INVALID_ARGUMENT", "Send the request body as application/json.", {
        reason: "invalid_content_type",
      });
    default:
      if (err.statusCode === 400 && err.name === "SyntaxError") {
        return new AppError("INVALID_ARGUMENT", "We could not parse the JSON body of your request.", {
          reason: "invalid_json",
        });
      }
      return undefined;
  }
}

/** The most of a refused body read (and thrown away) so that the client gets to read its 413 or 4xx. */
const DRAIN_MAX_BYTES = 64 * 1024 * 1024;
const DRAIN_MAX_MS = 10_000;

/**
 * Reads and discards the rest of a request body. Answering while the client is still sending makes it see a broken
 * pipe instead of the answer (the official openai client reports a connection error, not the 413); past
 * `DRAIN_MAX_BYTES` or `DRAIN_MAX_MS` the client is cut off anyway. A no-op once the body has been read.
 */
function drain(req: IncomingMessage): Promise<void> {
  if (req.complete || req.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    let seen = 0;
    const done = () => {
      clearTimeout(timer);
      req.off("data", onData);
      req.off("end", done);
      req.off("error", done);
      resolve();
    };
    const onData = (chunk: Buffer) => {
      seen += chunk.length;
      if (seen > DRAIN_MAX_BYTES) done();
    };
    const timer = setTimeout(done, DRAIN_MAX_MS);
    req.on("data", onData);
    req.once("end", done);
    req.once("error", done);
    req.resume();
  });
}

/**
 * How a wire format words an error: the status (`status` when the handler imposes one, e.g. 413), headers and body
 * for an error, with the request id.
 */
export type ErrorRenderer = (
  err: unknown,
  requestId: string,
  status: number | undefined,
) => { status: number; headers: Record<string, string>; body: unknown; error: AppError };

/** OpenAI's error body `{ error: { message, type, code, param, request_id } }` and the status of the AppError. */
export const openAIErrors: ErrorRenderer = (err, requestId, status) => {
  const mapped = toHttpError(err, requestId);
  return { ...mapped, status: status ?? mapped.status };
};

/**
 * The error handler of a set of routes: Fastify's own errors as AppErrors, a 413 read to the end, INTERNAL errors
 * logged, rate-limit refusals counted, then the body `render` words.
 */
export function errorHandler(logger: Logger, render: ErrorRenderer) {
  return async (err: FastifyError, req: FastifyRequest, reply: FastifyReply) => {
    const appErr = fromFastify(err) ?? err;
    const tooLarge = (appErr as AppError).reason === "request_too_large";
    const mapped = render(appErr, req.id, tooLarge ? 413 : undefined);
    // Any answer given before the body was read (too large, a wrong content type) waits for the rest of it.
    await drain(req.raw);
    if (mapped.error.code === "INTERNAL") logger.error({ err, request_id: req.id }, "request failed");
    if (mapped.error.reason === "rate_limit_exceeded") {
      metrics.rateLimited.inc({ limit: mapped.error.message.includes("tokens") ? "tokens" : "requests" });
    }
    return reply.code(mapped.status).headers(mapped.headers).send(mapped.body);
  };
}

/**
 * One error mapping for every route: OpenAI's error body with the request id, and the status of the AppError.
 * Routes of another wire format set their own renderer in their encapsulated scope (anthropic.routes.ts).
 */
export function registerErrorHandler(app: FastifyInstance, logger: Logger): void {
  app.setErrorHandler(errorHandler(logger, openAIErrors));
  // An empty body with a JSON content type (what many clients send on DELETE) is no body, not invalid JSON; routes
  // that need a body say so themselves.
  // Fastify's own JSON parser (it refuses __proto__ and constructor poisoning) behind the empty-body check.
  const json = app.getDefaultJsonParser("error", "error");
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "string" }, (req, body, done) => {
    if ((body as string).trim() === "") return done(null, undefined);
    json(req, body as string, done);
  });
  app.setNotFoundHandler(async (req, reply) => {
    const mapped = toHttpError(
      new AppError("NOT_FOUND", `Unknown path ${req.method} ${req.url.split("?")[0]}`),
      req.id,
    );
    await drain(req.raw);
    return reply.code(404).send(mapped.body);
  });
}
