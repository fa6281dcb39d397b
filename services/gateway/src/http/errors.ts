import { AppError, toHttpError } from "@tokenmesh/runtime";
import type { Logger } from "@tokenmesh/telemetry";
import type { FastifyError, FastifyInstance } from "fastify";
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

/** One error mapping for every route: OpenAI's error body with the request id, and the status of the AppError. */
export function registerErrorHandler(app: FastifyInstance, logger: Logger): void {
  app.setErrorHandler((err: FastifyError, req, reply) => {
    const appErr = fromFastify(err) ?? err;
    const mapped = toHttpError(appErr, req.id);
    let status = mapped.status;
    if ((appErr as AppError).reason === "request_too_large") status = 413;
    if (mapped.error.code === "INTERNAL") logger.error({ err, request_id: req.id }, "request failed");
    if (mapped.error.reason === "rate_limit_exceeded") {
      metrics.rateLimited.inc({ limit: mapped.error.message.includes("tokens") ? "tokens" : "requests" });
    }
    void reply.code(status).headers(mapped.headers).send(mapped.body);
  });
  app.setNotFoundHandler((req, reply) => {
    const mapped = toHttpError(
      new AppError("NOT_FOUND", `Unknown path ${req.method} ${req.url.split("?")[0]}`),
      req.id,
    );
    void reply.code(404).send(mapped.body);
  });
}
