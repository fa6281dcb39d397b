import { type IncomingMessage, type ServerResponse, STATUS_CODES } from "node:http";
import type { Duplex } from "node:stream";
import { AppError, toHttpError } from "@tokenmesh/runtime";
import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import { mintRequestId } from "../domain/request-id.js";

/** How long a refused connection may go on sending (read and dropped) before it is cut. */
const LINGER_MS = 2_000;

/** Connections answered by `answerClientError`, lingering until the client is done or `LINGER_MS` is up. */
const refused = new WeakSet<Duplex>();

function refusal(code: string | undefined): { status: number; error: AppError } {
  switch (code) {
    case "HPE_HEADER_OVERFLOW":
      return {
        status: 431,
        error: new AppError("INVALID_ARGUMENT", "The request headers are too large.", {
          reason: "request_headers_too_large",
        }),
      };
    case "ERR_HTTP_REQUEST_TIMEOUT":
      return {
        status: 408,
        error: new AppError("DEADLINE_EXCEEDED", "The request was not sent in time.", { reason: "request_timeout" }),
      };
    default:
      return {
        status: 400,
        error: new AppError("INVALID_ARGUMENT", "We could not parse your HTTP request.", {
          reason: "invalid_http_request",
        }),
      };
  }
}

function errorBody(error: AppError): string {
  return JSON.stringify(toHttpError(error, mintRequestId()).body);
}

/**
 * Fastify's `clientErrorHandler`: a request Node's HTTP parser refuses (bad request line, bad header bytes, headers
 * over the size limit, too slow) gets OpenAI's error body like every other refusal, instead of Fastify's own
 * `{error, message, statusCode}`. The connection closes after the answer; what the client still sends meanwhile is
 * read and dropped for up to `LINGER_MS`, so that the client reads the answer instead of a reset.
 */
export function answerClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (err.code === "ECONNRESET" || socket.destroyed) return;
  // Once a connection is refused, Node's parser reports every later chunk of it again (and its end): those chunks are
  // what the linger reads and drops. Cutting the connection here instead reset it while the client was still sending,
  // and a client that had not read the answer yet got EPIPE instead of its 400 (the fuzz suite found it).
  if (refused.has(socket)) return;
  // A response already started on this connection cannot be followed by another.
  const started = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent;
  if (socket.writableEnded || started || !socket.writable) {
    socket.destroy();
    return;
  }
  refused.add(socket);
  const { status, error } = refusal(err.code);
  const body = errorBody(error);
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json; charset=utf-8\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
  socket.resume();
  setTimeout(() => socket.destroy(), LINGER_MS).unref();
}

/**
 * The HTTP server's `checkExpectation` listener: an `Expect` other than `100-continue` is refused 417 with OpenAI's
 * error body (Node's own 417 has none). The body is not read, so the connection closes after the answer.
 */
export function refuseExpectation(_req: IncomingMessage, res: ServerResponse): void {
  const body = errorBody(
    new AppError("INVALID_ARGUMENT", "The Expect header is not supported (only 100-continue is).", {
      reason: "expectation_failed",
    }),
  );
  res.writeHead(417, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(body),
    connection: "close",
  });
  res.end(body);
}

/**
 * Fastify's `frameworkErrors`: a path its router cannot take (malformed percent-encoding, a path parameter over
 * `maxParamLength`) is refused 400 with OpenAI's error body instead of Fastify's own.
 */
export function answerFrameworkError(err: FastifyError, req: FastifyRequest, reply: FastifyReply): void {
  const message =
    err.code === "FST_ERR_BAD_URL"
      ? "The request path is not valid (malformed percent-encoding)."
      : err.code === "FST_ERR_MAX_PARAM_LENGTH"
        ? "A parameter in the request path is too long."
        : "We could not route your request.";
  const mapped = toHttpError(new AppError("INVALID_ARGUMENT", message, { reason: "invalid_url" }), req.id);
  void reply.code(400).header("x-request-id", req.id).send(mapped.body);
}
