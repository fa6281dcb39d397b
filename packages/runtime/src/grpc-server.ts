import { once } from "node:events";
import { readFileSync } from "node:fs";
import {
  ServerCredentials as Credentials,
  Metadata,
  type MethodDefinition,
  Server,
  type ServerCredentials,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceDefinition,
  type sendUnaryData,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { loadFileDescriptorSetFromBuffer } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { descriptorSetPath } from "@tokenmesh/proto";
import {
  context,
  type Logger,
  metadataGetter,
  propagation,
  recordSpanError,
  rpcMetrics,
  SpanKind,
  splitMethod,
  statusName,
  trace,
  tracer,
} from "@tokenmesh/telemetry";
import { HealthImplementation } from "grpc-health-check";
import { AppError, toAppError } from "./errors.js";
import { toGrpcStatus } from "./grpc-errors.js";
import { bounded, decoded, decodeSafely } from "./grpc-front-door.js";
import {
  type IncomingCall,
  Multiplexed,
  type MuxRequestFrame,
  type MuxResponseFrame,
  MuxServerStream,
} from "./grpc-mux.js";

/** What a handler knows about its call besides the request. */
export interface CallContext {
  metadata: Metadata;
  /** Aborted when the client cancels, the deadline passes, or the server is forced to stop. */
  signal: AbortSignal;
  /** The call's deadline, if the client set one. */
  deadline: Date | undefined;
  peer: string;
  /**
   * Sends response headers (initial metadata) ahead of the answer; only before the first message of a stream (or the
   * response of a unary call), and once: later calls are ignored.
   */
  sendMetadata(headers: Record<string, string>): void;
}

export type UnaryHandler<Req, Res> = (request: Req, ctx: CallContext) => Promise<Res>;
export type ServerStreamHandler<Req, Res> = (request: Req, ctx: CallContext) => AsyncIterable<Res>;
export type BidiHandler<Req, Res> = (requests: AsyncIterable<Req>, ctx: CallContext) => AsyncIterable<Res>;

/** The handler type a method definition calls for (unary, server stream or bidirectional stream). */
export type HandlerFor<M> =
  M extends MethodDefinition<infer Req, infer Res>
    ? M["responseStream"] extends true
      ? M["requestStream"] extends true
        ? BidiHandler<Req, Res> | MultiplexedFor<Req, Res>
        : ServerStreamHandler<Req, Res>
      : UnaryHandler<Req, Res>
    : never;

/** A bidirectional method whose frames carry multiplexed calls (grpc-mux.ts). */
type MultiplexedFor<Req, Res> =
  Req extends MuxRequestFrame<unknown>
    ? Res extends MuxResponseFrame<unknown>
      ? Multiplexed<Req, Res>
      : never
    : never;

export type Handlers<S> = { [K in keyof S]: HandlerFor<S[K]> };

export interface GrpcServerOptions {
  logger: Logger;
  /** Max message size in bytes, both ways (default 16 MiB: prompts with images are large). */
  maxMessageBytes?: number;
}

/**
 * A gRPC server with the standard `grpc.health.v1.Health` service, server reflection for every Tokenmesh proto,
 * and handlers written as async functions / async generators. Every call gets a SERVER span continuing the
 * caller's W3C trace context from metadata, rate/latency/status metrics, an AbortSignal, and AppError → status
 * mapping (unknown errors become INTERNAL with a generic message; the original goes to the log and the span).
 * It faces any client: a request that does not decode is refused INVALID_ARGUMENT (not INTERNAL), and status
 * messages are clipped so an error echoing a huge client value cannot overflow the caller's header limit and tear
 * down its whole HTTP/2 session (see grpc-front-door.ts).
 */
export class GrpcServer {
  readonly server: Server;
  private readonly health = new HealthImplementation({ "": "NOT_SERVING" });
  private readonly serviceNames: string[] = [];
  private readonly active = new Set<AbortController>();
  /** Open multiplexed streams: told to drain at shutdown. */
  private readonly muxStreams = new Set<MuxServerStream<unknown, unknown>>();
  private readonly log: Logger;

  constructor(options: GrpcServerOptions) {
    this.log = options.logger;
    const max = options.maxMessageBytes ?? 16 * 1024 * 1024;
    this.server = new Server({
      "grpc.max_receive_message_length": max,
      "grpc.max_send_message_length": max,
      "grpc.keepalive_time_ms": 30_000,
      "grpc.keepalive_permit_without_calls": 1,
      // Not served here (see grpc-client.ts): spares per-call and per-message bookkeeping.
      "grpc.enable_channelz": 0,
    });
    this.health.addToServer(this.server);
  }

  /** Registers a service whose handlers are async functions (unary) or async iterables (streams). */
  add<S extends ServiceDefinition>(definition: S, handlers: Handlers<S>): void {
    const impl: UntypedServiceImplementation = {};
    const safe: Record<string, MethodDefinition<unknown, unknown>> = {};
    let fullName = "";
    for (const [name, def] of Object.entries(definition) as [string, MethodDefinition<unknown, unknown>][]) {
      const handler = (handlers as Record<string, unknown>)[name];
      if (typeof handler !== "function" && !(handler instanceof Multiplexed))
        throw new Error(`no handler for ${def.path}`);
      fullName = splitMethod(def.path).service;
      if (handler instanceof Multiplexed) {
        // Its frames are encoded one by one by the stream (grpc-mux.ts), so one bad message fails one call.
        safe[name] = { ...def, responseSerialize: (frame: unknown) => frame as Buffer };
        impl[name] = this.adaptMux(handler, def.responseSerialize);
      } else {
        safe[name] = decodeSafely(def);
        impl[name] = this.adapt(def, handler as (...args: unknown[]) => unknown);
      }
    }
    this.serviceNames.push(fullName);
    this.server.addService(safe, impl);
  }

  /** Binds and starts; returns the bound port (useful with port 0). */
  async listen(
    host: string,
    port: number,
    credentials: ServerCredentials = Credentials.createInsecure(),
  ): Promise<number> {
    // Reflection lists exactly the services this server registered (the descriptor set holds every contract).
    const descriptors = loadFileDescriptorSetFromBuffer(readFileSync(descriptorSetPath));
    new ReflectionService(descriptors, { services: [...this.serviceNames] }).addToServer(this.server);
    const bound = await new Promise<number>((resolve, reject) => {
      this.server.bindAsync(`${host}:${port}`, credentials, (err, p) => (err ? reject(err) : resolve(p)));
    });
    return bound;
  }

  /** Sets the health status of the server ("") and of every registered service. */
  setServing(serving: boolean): void {
    const s = serving ? "SERVING" : "NOT_SERVING";
    this.health.setStatus("", s);
    for (const name of this.serviceNames) this.health.setStatus(name, s);
  }

  /** Calls in flight. */
  get inFlight(): number {
    return this.active.size;
  }

  /**
   * Stops taking calls and waits for those in flight; after `graceMs` aborts their handlers (generation stops)
   * and forces the server down.
   */
  async shutdown(graceMs: number): Promise<void> {
    this.setServing(false);
    // A multiplexed stream never ends by itself: it finishes its calls and refuses new ones (sent elsewhere).
    for (const stream of this.muxStreams) stream.drain();
    const drained = new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), graceMs);
    });
    const result = await Promise.race([drained, timeout]);
    clearTimeout(timer);
    if (result === "timeout") {
      this.log.warn({ in_flight: this.active.size }, "gRPC drain deadline passed; aborting calls");
      for (const ac of this.active) ac.abort(new AppError("UNAVAILABLE", "server shutting down"));
      this.server.forceShutdown();
    }
  }

  /**
   * Starts serving one call (of its own, or one of a multiplexed stream's): its SERVER span continuing the caller's
   * trace, its AbortSignal (client cancel, deadline, forced shutdown) and `end`, which records its status.
   */
  private begin(path: string, call: IncomingCall) {
    const { service, method } = splitMethod(path);
    const parent = propagation.extract(context.active(), call.metadata, metadataGetter);
    const span = tracer().startSpan(
      path.slice(1),
      { kind: SpanKind.SERVER, attributes: { "rpc.system": "grpc", "rpc.service": service, "rpc.method": method } },
      parent,
    );
    const ac = new AbortController();
    this.active.add(ac);
    const rawDeadline = call.getDeadline();
    const deadline =
      rawDeadline instanceof Date ? rawDeadline : Number.isFinite(rawDeadline) ? new Date(rawDeadline) : undefined;
    let deadlineTimer: NodeJS.Timeout | undefined;
    if (deadline) {
      deadlineTimer = setTimeout(
        () => ac.abort(new AppError("DEADLINE_EXCEEDED", "deadline exceeded")),
        Math.max(0, deadline.getTime() - Date.now()),
      );
    }
    let ended = false;
    // grpc-js also emits "cancelled" when a call that already answered closes its stream: only a call still in
    // progress is really cancelled (aborting a finished one cost an error object and woke every abort listener).
    call.on("cancelled", () => {
      if (ended) return;
      rpcMetrics.serverCancelled.inc({ service, method });
      ac.abort(new AppError("CANCELLED", "cancelled by the client"));
    });
    const started = performance.now();
    let headersSent = false;
    const ctx: CallContext = {
      metadata: call.metadata,
      signal: ac.signal,
      deadline,
      peer: call.getPeer(),
      sendMetadata: (headers) => {
        if (headersSent) return;
        headersSent = true;
        const md = new Metadata();
        for (const [k, v] of Object.entries(headers)) md.set(k, v);
        call.sendMetadata(md);
      },
    };
    const end = (err?: unknown) => {
      ended = true;
      clearTimeout(deadlineTimer);
      this.active.delete(ac);
      let code = "OK";
      if (err !== undefined) {
        const e = toAppError(err);
        code = statusName(toGrpcStatus(e).code);
        recordSpanError(span, e);
        if (e.code === "INTERNAL") this.log.error({ err, method: path }, "handler failed");
      }
      span.setAttribute("rpc.grpc.status_code", code);
      span.end();
      rpcMetrics.serverHandled.inc({ service, method, code });
      rpcMetrics.serverDuration.observe({ service, method, code }, (performance.now() - started) / 1000);
    };
    return { ctx, end, active: trace.setSpan(parent, span) };
  }

  /** Serves a multiplexed method: each call on each stream as a call of `mux.path` (see grpc-mux.ts). */
  private adaptMux(
    mux: Multiplexed<MuxRequestFrame<unknown>, MuxResponseFrame<unknown>>,
    encode: (frame: MuxResponseFrame<unknown>) => Buffer,
  ) {
    return (call: ServerDuplexStream<MuxRequestFrame<unknown>, Buffer>) => {
      const stream: MuxServerStream<unknown, unknown> = new MuxServerStream(
        call,
        encode,
        (request, callLike, send) => {
          const { ctx, end, active } = this.begin(mux.path, callLike);
          return context
            .with(active, async () => {
              for await (const msg of mux.handler(decoded(request), ctx)) {
                if (ctx.signal.aborted) break;
                const wait = send(msg);
                if (wait !== undefined) await Promise.race([wait, once(ctx.signal, "abort")]);
              }
              if (ctx.signal.aborted) throw ctx.signal.reason;
            })
            .then(
              () => end(),
              (err) => {
                end(err);
                throw err;
              },
            );
        },
        this.log,
        () => this.muxStreams.delete(stream),
      );
      this.muxStreams.add(stream);
    };
  }

  private adapt(def: MethodDefinition<unknown, unknown>, handler: (...args: unknown[]) => unknown) {
    const begin = (call: IncomingCall) => this.begin(def.path, call);

    if (!def.responseStream) {
      return (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
        const { ctx, end, active } = begin(call);
        context
          .with(active, async () => (handler as UnaryHandler<unknown, unknown>)(decoded(call.request), ctx))
          .then(
            (res) => {
              end();
              callback(null, res);
            },
            (err) => {
              end(err);
              callback(toGrpcStatus(bounded(err)));
            },
          );
      };
    }

    const pump = async (
      call: ServerWritableStream<unknown, unknown> | ServerDuplexStream<unknown, unknown>,
      source: AsyncIterable<unknown>,
      ctx: CallContext,
    ) => {
      for await (const msg of source) {
        if (ctx.signal.aborted) break;
        if (!call.write(msg)) {
          // Respect flow control: wait until the client reads, unless the call ends first.
          await Promise.race([once(call, "drain"), once(ctx.signal, "abort")]);
        }
      }
    };

    return (call: ServerWritableStream<unknown, unknown> | ServerDuplexStream<unknown, unknown>) => {
      const { ctx, end, active } = begin(call);
      void context
        .with(active, async () => {
          // Iterating the call itself would destroy the whole duplex when the client half-closes, taking the
          // response side down before the handler has written its last messages.
          const source = def.requestStream
            ? (handler as BidiHandler<unknown, unknown>)(
                (call as ServerDuplexStream<unknown, unknown>).iterator({ destroyOnReturn: false }),
                ctx,
              )
            : (handler as ServerStreamHandler<unknown, unknown>)(
                decoded((call as ServerWritableStream<unknown, unknown>).request),
                ctx,
              );
          await pump(call, source, ctx);
        })
        .then(
          () => {
            end(ctx.signal.aborted ? ctx.signal.reason : undefined);
            if (ctx.signal.aborted) call.emit("error", toGrpcStatus(bounded(ctx.signal.reason)));
            else call.end();
          },
          (err) => {
            end(err);
            call.emit("error", toGrpcStatus(bounded(err)));
          },
        );
    };
  }
}
