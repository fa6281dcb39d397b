import {
  type CallOptions,
  type ChannelCredentials,
  type Client,
  type ClientOptions,
  type ClientReadableStream,
  credentials as grpcCredentials,
  Metadata,
} from "@grpc/grpc-js";
import { clientInterceptor } from "@tokenmesh/telemetry";
import { fromGrpcError } from "./grpc-errors.js";
import { MuxClient, type MuxClientOptions } from "./grpc-mux.js";

type ClientCtor<C> = new (address: string, credentials: ChannelCredentials, options?: Partial<ClientOptions>) => C;

/**
 * A client for a peer service with tracing/metrics interceptors, keepalive, and retries of transparent
 * transport failures by grpc-js. Application-level retries belong to the router, not here.
 */
export function createGrpcClient<C extends Client>(
  ctor: ClientCtor<C>,
  address: string,
  options: Partial<ClientOptions> = {},
): C {
  return new ctor(address, grpcCredentials.createInsecure(), {
    interceptors: [clientInterceptor],
    "grpc.keepalive_time_ms": 30_000,
    "grpc.keepalive_timeout_ms": 10_000,
    "grpc.max_receive_message_length": 16 * 1024 * 1024,
    "grpc.max_send_message_length": 16 * 1024 * 1024,
    // A peer that restarts (a crash, a rollout) is reconnected to within a second, not after grpc-js' default
    // backoff of up to two minutes.
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 1_000,
    // Channelz (grpc-js' introspection registry, on by default) counts every call and message; nothing here
    // serves it, and Prometheus has the same counts (rpc metrics in @tokenmesh/telemetry).
    "grpc.enable_channelz": 0,
    ...options,
  });
}

/**
 * Calls of `options.path` on at most `options.streams` long-lived streams of `options.method` (MuxClient) over the
 * connection of `client` (a createGrpcClient client), opened from a client of the same channel without the tracing
 * interceptor: each call on the streams has its own span and metrics, where a span of the stream's own would last as
 * long as the stream.
 */
export function createSharedStreams<C extends Client, Req, Res>(
  ctor: ClientCtor<C>,
  address: string,
  client: C,
  options: Omit<MuxClientOptions<Req, Res>, "client">,
): MuxClient<Req, Res> {
  const plain = new ctor(address, grpcCredentials.createInsecure(), { channelOverride: client.getChannel() });
  return new MuxClient({ ...options, client: plain });
}

/** Per-call options: a deadline, metadata and an AbortSignal that cancels the call. */
export interface CallParams {
  deadlineMs?: number;
  metadata?: Metadata;
  signal?: AbortSignal;
}

/**
 * Starts a call without the stack trace grpc-js captures for it. grpc-js builds a `new Error()` at every call, to
 * append the caller's frames to the error of a call that fails; `fromGrpcError` turns that error into an AppError
 * with a stack of its own, so the capture is spent on every call for nothing: ~2 % of the gateway's CPU at its
 * max rate (CPU profile, `makeServerStreamRequest`'s self time). Only errors made synchronously while the call
 * starts lose their frames.
 */
export function withoutCallerStack<T>(start: () => T): T {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return start();
  } finally {
    Error.stackTraceLimit = limit;
  }
}

function callOptions(p: CallParams): Partial<CallOptions> {
  return p.deadlineMs ? { deadline: new Date(Date.now() + p.deadlineMs) } : {};
}

/**
 * Calls a unary method as a promise. Errors are AppErrors rebuilt from the peer's ErrorDetail trailer.
 */
export function callUnary<Req, Res>(
  method: (
    req: Req,
    md: Metadata,
    opts: Partial<CallOptions>,
    cb: (err: Error | null, res: Res) => void,
  ) => { cancel(): void },
  request: Req,
  params: CallParams = {},
): Promise<Res> {
  return new Promise<Res>((resolve, reject) => {
    const call = withoutCallerStack(() =>
      method(request, params.metadata ?? new Metadata(), callOptions(params), (err, res) => {
        params.signal?.removeEventListener("abort", onAbort);
        if (err) reject(fromGrpcError(err));
        else resolve(res);
      }),
    );
    const onAbort = () => call.cancel();
    if (params.signal?.aborted) call.cancel();
    else params.signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Calls a server-streaming method as an async iterable. Breaking out of the loop (or aborting the signal) cancels
 * the call; errors are AppErrors rebuilt from the peer's trailer.
 */
export async function* callStream<Req, Res>(
  method: (req: Req, md: Metadata, opts: Partial<CallOptions>) => ClientReadableStream<Res>,
  request: Req,
  params: CallParams = {},
): AsyncGenerator<Res> {
  const call = withoutCallerStack(() => method(request, params.metadata ?? new Metadata(), callOptions(params)));
  const onAbort = () => call.cancel();
  // As callUnary: a signal aborted before the stream is first read fires no event.
  if (params.signal?.aborted) call.cancel();
  else params.signal?.addEventListener("abort", onAbort, { once: true });
  let finished = false;
  try {
    for await (const msg of call) yield msg as Res;
    finished = true;
  } catch (err) {
    finished = true;
    throw fromGrpcError(err);
  } finally {
    params.signal?.removeEventListener("abort", onAbort);
    if (!finished) call.cancel();
  }
}
