import type { MethodDefinition } from "@grpc/grpc-js";
import { AppError } from "./errors.js";

/**
 * The longest status message (and `param`) the front door sends. Messages may echo what the client sent (a model
 * name), and the message travels twice in the trailers (`grpc-message`, percent-encoded, and the error detail):
 * trailers over a client's header-list limit (64 KiB in Node's HTTP/2) make the client tear down its whole HTTP/2
 * session, failing every other call on the channel.
 */
const MAX_MESSAGE_CHARS = 1_024;
const MAX_PARAM_CHARS = 256;

/** What the deserializer hands on for bytes that are not a message of the method's request type. */
export class UndecodableRequest {
  constructor(readonly type: string) {}
}

/** `s` cut to `max` UTF-16 units, never inside a surrogate pair (grpc-js percent-encodes the message and would throw). */
function clip(s: string, max: number): string {
  if (s.length <= max) return s;
  let end = max - 1;
  const last = s.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return `${s.slice(0, end)}…`;
}

/**
 * What a gRPC server may send for any client: the same AppError with its message and param clipped (see
 * `MAX_MESSAGE_CHARS`); anything else as it is (it goes out as INTERNAL with a generic message).
 */
export function bounded(err: unknown): unknown {
  if (!(err instanceof AppError)) return err;
  if (err.message.length <= MAX_MESSAGE_CHARS && (err.param?.length ?? 0) <= MAX_PARAM_CHARS) return err;
  return new AppError(err.code, clip(err.message, MAX_MESSAGE_CHARS), {
    retryable: err.retryable,
    origin: err.origin,
    cause: err,
    ...(err.param !== undefined ? { param: clip(err.param, MAX_PARAM_CHARS) } : {}),
    ...(err.retryAfterMs !== undefined ? { retryAfterMs: err.retryAfterMs } : {}),
    ...(err.reason !== undefined ? { reason: err.reason } : {}),
    ...(err.upstreamStatus !== undefined ? { upstreamStatus: err.upstreamStatus } : {}),
  });
}

/** The request, or INVALID_ARGUMENT for one that `decodeSafely` could not decode. */
export function decoded<Req>(request: Req): Req {
  if (request instanceof UndecodableRequest) {
    throw new AppError("INVALID_ARGUMENT", `The request message is not a valid ${request.type}.`, {
      reason: "invalid_request",
    });
  }
  return request;
}

/**
 * `def` with a request decoder that never throws: bytes that are not a message of the method's request type
 * (garbage, cut short, nested deeper than the decoder's stack) decode to a marker that `decoded` refuses
 * INVALID_ARGUMENT. Left to grpc-js, a throwing deserializer answers INTERNAL. Client-streaming methods keep their
 * decoder.
 */
export function decodeSafely<Req, Res>(def: MethodDefinition<Req, Res>): MethodDefinition<Req, Res> {
  if (def.requestStream) return def;
  const type = `${def.path.slice(def.path.lastIndexOf("/") + 1)} request`;
  return {
    ...def,
    requestDeserialize: (bytes: Buffer) => {
      try {
        return def.requestDeserialize(bytes);
      } catch {
        return new UndecodableRequest(type) as Req;
      }
    },
  };
}
