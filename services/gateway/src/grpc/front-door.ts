import type { MethodDefinition, ServiceDefinition } from "@grpc/grpc-js";
import { AppError, type CallContext, type Handlers } from "@tokenmesh/runtime";

/**
 * The longest status message (and `param`) the front door sends. Messages may echo what the client sent (a model
 * name), and the message travels twice in the trailers (`grpc-message`, percent-encoded, and the error detail):
 * trailers over a client's header-list limit (64 KiB in Node's HTTP/2) make the client tear down its whole HTTP/2
 * session, failing every other call on the channel.
 */
const MAX_MESSAGE_CHARS = 1_024;
const MAX_PARAM_CHARS = 256;

/** What the deserializer hands on for bytes that are not a message of the method's request type. */
class UndecodableRequest {
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

/** The same AppError with its message and param clipped; anything else as it is (it goes out as INTERNAL). */
function bounded(err: unknown): unknown {
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

function decoded(request: unknown): unknown {
  if (request instanceof UndecodableRequest) {
    throw new AppError("INVALID_ARGUMENT", `The request message is not a valid ${request.type}.`, {
      reason: "invalid_request",
    });
  }
  return request;
}

/**
 * Makes a service safe to face any client, for unary and server-streaming methods:
 * - a request message that does not decode (garbage, cut short, nested deeper than the decoder's stack) is refused
 *   INVALID_ARGUMENT; left to grpc-js, a throwing deserializer answers INTERNAL;
 * - error messages and params are clipped (see `MAX_MESSAGE_CHARS`).
 *
 * Returns the definition and handlers to register, in place of the given ones.
 */
export function frontDoor<S extends ServiceDefinition>(
  definition: S,
  handlers: Handlers<S>,
): { definition: S; handlers: Handlers<S> } {
  const methods = Object.entries(definition) as [string, MethodDefinition<unknown, unknown>][];
  const def: Record<string, MethodDefinition<unknown, unknown>> = {};
  const wrapped: Record<string, unknown> = {};
  for (const [name, m] of methods) {
    const handler = (handlers as Record<string, (request: unknown, ctx: CallContext) => unknown>)[name]!;
    if (m.requestStream) {
      def[name] = m;
      wrapped[name] = handler;
      continue;
    }
    const type = `${m.path.slice(m.path.lastIndexOf("/") + 1)} request`;
    def[name] = {
      ...m,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return m.requestDeserialize(bytes);
        } catch {
          return new UndecodableRequest(type);
        }
      },
    };
    wrapped[name] = m.responseStream
      ? async function* (request: unknown, ctx: CallContext) {
          try {
            yield* handler(decoded(request), ctx) as AsyncIterable<unknown>;
          } catch (err) {
            throw bounded(err);
          }
        }
      : async (request: unknown, ctx: CallContext) => {
          try {
            return await (handler(decoded(request), ctx) as Promise<unknown>);
          } catch (err) {
            throw bounded(err);
          }
        };
  }
  return { definition: def as S, handlers: wrapped as Handlers<S> };
}
