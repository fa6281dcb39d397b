import {
  type Client,
  type ClientDuplexStream,
  Metadata,
  type MethodDefinition,
  type ServerDuplexStream,
  status,
} from "@grpc/grpc-js";
import type { ErrorDetail } from "@tokenmesh/proto/common/v1/context";
import type { CallEnd, CallHeader } from "@tokenmesh/proto/common/v1/stream";
import { type ClientCall, type Logger, rpcMetrics, splitMethod, startClientCall } from "@tokenmesh/telemetry";
import { AppError, toAppError } from "./errors.js";
import type { CallParams } from "./grpc-client.js";
import { appErrorOf, errorDetailOf, fromGrpcError, grpcStatusOf } from "./grpc-errors.js";
import { bounded } from "./grpc-front-door.js";
import type { ServerStreamHandler } from "./grpc-server.js";

/*
 * Multiplexed calls (tokenmesh/common/v1/stream.proto): many calls of one server-streaming method share a
 * long-lived bidirectional stream. A gRPC call of its own per request is an HTTP/2 stream per request, and on Node
 * that costs more CPU than the routing it carries, and leaves work for the young-generation GC that it copies and
 * promotes (bench/grpc: 290 against 64 µs of CPU per request; bench/gateway/README.md, stops 18 and 19).
 *
 * What a call of its own has, each call on the stream keeps: its deadline (relative, in the start frame), its
 * cancellation (a cancel frame; a stream that breaks cancels every call on it), its own flow control (a window of
 * answer messages the caller grants as it reads, so one slow reader does not stall the other calls sharing the
 * stream), its status and ErrorDetail (the end frame), its trace context, span and metrics under the method it
 * stands for, and draining: a server that shuts down sends a drain frame, finishes the calls in flight, refuses new
 * ones with UNAVAILABLE `draining` (the client moves them to a new stream: nothing ran) and then ends the stream.
 */

/** A frame from the caller: starts, cancels or grants credit to call `id`. */
export interface MuxRequestFrame<Req> {
  id: number;
  start?: Req | undefined;
  cancel?: object | undefined;
  credit?: number | undefined;
  header?: CallHeader | undefined;
}

/** A frame from the server: a message of call `id`'s answer, its end, or the stream's drain. */
export interface MuxResponseFrame<Res> {
  id: number;
  message?: Res | undefined;
  end?: CallEnd | undefined;
  drain?: object | undefined;
}

/** The reason of the UNAVAILABLE a draining server answers a new call with: nothing ran, so it may go elsewhere. */
export const DRAINING = "draining";

type StartOf<F> = F extends MuxRequestFrame<infer Req> ? Req : never;
type MessageOf<F> = F extends MuxResponseFrame<infer Res> ? Res : never;

/**
 * Registers a bidirectional method as the multiplexed form of a server-streaming handler: `GrpcServer.add` serves
 * each call on its streams through `handler`, as a call of its own (span, metrics, deadline, cancellation, drain).
 */
export class Multiplexed<In extends MuxRequestFrame<unknown>, Out extends MuxResponseFrame<unknown>> {
  constructor(
    /** The method each call stands for, `/package.Service/Method`: its spans and metrics are that method's. */
    readonly path: string,
    readonly handler: ServerStreamHandler<StartOf<In>, MessageOf<Out>>,
  ) {}
}

/** A gRPC status as the end frame of a call. */
export function callEndOf(err: unknown): CallEnd {
  if (err === undefined) return { code: status.OK, message: "" };
  const e = toAppError(bounded(err));
  return { code: grpcStatusOf(e.code), message: e.message, detail: errorDetailOf(e) };
}

/** What GrpcServer reads of a call it serves: a grpc-js call, or one call of a multiplexed stream. */
export interface IncomingCall {
  metadata: Metadata;
  getDeadline(): Date | number;
  getPeer(): string;
  on(event: "cancelled", listener: () => void): unknown;
  sendMetadata(md: Metadata): void;
}

/** What a server does with one call on a multiplexed stream; GrpcServer supplies it (its span, metrics, deadline). */
export type MuxCallRunner<Req, Res> = (
  request: Req,
  call: IncomingCall,
  send: (message: Res) => Promise<void> | undefined,
) => Promise<unknown>;

interface ServedCall {
  cancel?: (() => void) | undefined;
  /** Messages the caller still accepts (Infinity: no window). */
  credit: number;
  wake?: (() => void) | undefined;
}

/**
 * The server side of one multiplexed stream. `run` serves a call and settles when it has ended (its end frame is
 * sent here, from how `run` settled: resolved is OK, rejected is the error's status).
 */
export class MuxServerStream<Req, Res> {
  private readonly calls = new Map<number, ServedCall>();
  private draining = false;
  private halfClosed = false;
  private closed = false;
  private drained: Promise<void> | undefined;

  constructor(
    private readonly call: ServerDuplexStream<MuxRequestFrame<Req>, Buffer>,
    /** Frames are encoded here, one by one, so a message that cannot be encoded fails its own call, not the stream. */
    private readonly encode: (frame: MuxResponseFrame<Res>) => Buffer,
    private readonly run: MuxCallRunner<Req, Res>,
    private readonly log: Logger,
    private readonly onClose: () => void,
  ) {
    call.on("data", (frame: MuxRequestFrame<Req>) => this.onFrame(frame));
    call.on("end", () => {
      this.halfClosed = true;
      this.maybeEnd();
    });
    const gone = () => this.close();
    call.on("cancelled", gone);
    call.on("close", gone);
    call.on("error", gone);
  }

  /** Refuses new calls, tells the caller to open another stream, and ends this one when its calls have ended. */
  drain(): void {
    if (this.draining || this.closed) return;
    this.draining = true;
    this.write({ id: 0, drain: {} });
    this.maybeEnd();
  }

  private onFrame(frame: MuxRequestFrame<Req>): void {
    const id = frame.id;
    if (frame.start !== undefined) {
      if (this.calls.has(id) || id === 0) {
        // A caller that reuses an id in flight cannot tell the two answers apart: refuse the stream, not guess.
        this.log.warn({ id }, "multiplexed call id reused or zero; ending the stream");
        this.call.emit("error", { code: status.INVALID_ARGUMENT, details: `call id ${id} is in use` });
        this.close();
        return;
      }
      if (this.draining || this.closed) {
        const refusal = new AppError("UNAVAILABLE", "the server is shutting down", { reason: DRAINING });
        this.write({ id, end: callEndOf(refusal) });
        return;
      }
      this.start(id, frame.start, frame.header);
      return;
    }
    const served = this.calls.get(id);
    if (served === undefined) return; // a frame for a call that already ended
    if (frame.cancel !== undefined) served.cancel?.();
    else if (frame.credit !== undefined && frame.credit > 0) {
      served.credit += frame.credit;
      const wake = served.wake;
      served.wake = undefined;
      wake?.();
    }
  }

  private start(id: number, request: Req, header: CallHeader | undefined): void {
    const window = header?.window ?? 0;
    const served: ServedCall = { credit: window > 0 ? window : Number.POSITIVE_INFINITY };
    this.calls.set(id, served);
    const metadata = new Metadata();
    if (header?.traceparent) metadata.set("traceparent", header.traceparent);
    if (header?.tracestate) metadata.set("tracestate", header.tracestate);
    const timeoutMs = header?.timeoutMs ?? 0;
    const deadline = timeoutMs > 0 ? new Date(Date.now() + timeoutMs) : Number.POSITIVE_INFINITY;
    const callLike = {
      metadata,
      getDeadline: () => deadline,
      getPeer: () => this.call.getPeer(),
      on: (_event: "cancelled", listener: () => void) => {
        served.cancel = listener;
        return callLike;
      },
      sendMetadata: () => {},
    };
    const send = (message: Res): Promise<void> | undefined => {
      if (served.credit <= 0) {
        // The caller has not read what it was sent: wait for its credit (or the call's end: cancel wakes it too).
        return new Promise<void>((resolve) => {
          served.wake = resolve;
        }).then(() => send(message));
      }
      served.credit--;
      return this.write({ id, message }) ? undefined : this.whenDrained();
    };
    this.run(request, callLike, send).then(
      () => this.finish(id, undefined),
      (err) => this.finish(id, err ?? new AppError("INTERNAL", "call failed")),
    );
  }

  private finish(id: number, err: unknown): void {
    const served = this.calls.get(id);
    this.calls.delete(id);
    served?.wake?.();
    this.write({ id, end: callEndOf(err) });
    this.maybeEnd();
  }

  /**
   * Writes a frame; false when the stream's buffer is full (wait for `whenDrained`). Throws, before anything is
   * written, for a frame that cannot be encoded.
   */
  private write(frame: MuxResponseFrame<Res>): boolean {
    if (this.closed) return true;
    return this.call.write(this.encode(frame));
  }

  private whenDrained(): Promise<void> {
    this.drained ??= new Promise<void>((resolve) => {
      const done = () => {
        this.call.off("drain", done);
        this.call.off("close", done);
        this.drained = undefined;
        resolve();
      };
      this.call.on("drain", done);
      this.call.on("close", done);
    });
    return this.drained;
  }

  private maybeEnd(): void {
    if (this.closed || this.calls.size > 0 || !(this.draining || this.halfClosed)) return;
    this.closed = true;
    this.call.end();
    this.onClose();
  }

  /** The stream is gone (the caller cancelled it or the connection broke): every call on it is cancelled. */
  private close(): void {
    if (this.closed && this.calls.size === 0) return;
    this.closed = true;
    for (const served of this.calls.values()) {
      served.cancel?.();
      served.wake?.();
    }
    this.onClose();
  }
}

/** Options of a multiplexing client. */
export interface MuxClientOptions<Req, Res> {
  /** The method each call stands for (`/package.Service/Method`): the name of its span and metrics. */
  path: string;
  /** The multiplexed method (bidirectional, its frames carrying calls of `path`). */
  method: MethodDefinition<MuxRequestFrame<Req>, MuxResponseFrame<Res>>;
  /**
   * Where its streams are opened: a client without the tracing interceptor (each call on a stream has its span,
   * made here; a span of the stream's own would last as long as the stream), e.g. one over another client's
   * channel (`channelOverride`).
   */
  client: Client;
  /** Serves a call as a call of its own when the server does not know the multiplexed method (an older release). */
  fallback?: ((request: Req, params: CallParams) => AsyncIterable<Res>) | undefined;
  /** Streams opened at most; a call goes to the one with the fewest calls in flight (default 4). */
  streams?: number | undefined;
  /** Answer messages a call accepts before it grants more as its reader takes them (default 64; 0: no limit). */
  window?: number | undefined;
  /** After a server answered UNIMPLEMENTED, how long calls go to `fallback` before the stream is tried again. */
  fallbackMs?: number | undefined;
}

const NOT_STARTED = Symbol("not started");

/** One call's answer as it arrives: messages, then its end. */
class PendingCall<Res> {
  readonly queue: Res[] = [];
  /** Set when the call has ended: null for OK, else the error; NOT_STARTED when the server never ran it. */
  end: AppError | null | typeof NOT_STARTED | undefined;
  /** The error to retry with when `end` is NOT_STARTED. */
  notStarted: AppError | undefined;
  wake: (() => void) | undefined;
  received = 0;

  push(message: Res): void {
    // Given up here already (signal, deadline): what the server sent before it heard is dropped.
    if (this.end !== undefined) return;
    this.queue.push(message);
    this.received++;
    this.notify();
  }

  settle(end: AppError | null | typeof NOT_STARTED): void {
    if (this.end !== undefined) return;
    this.end = end;
    this.notify();
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}

class ClientStream<Req, Res> {
  readonly calls = new Map<number, PendingCall<Res>>();
  draining = false;
  gone = false;
  private nextId = 1;

  constructor(
    readonly stream: ClientDuplexStream<Buffer, MuxResponseFrame<Res>>,
    /** Frames are encoded here, one by one, so a request that cannot be encoded fails its own call, not the stream. */
    private readonly encode: (frame: MuxRequestFrame<Req>) => Buffer,
    private readonly onGone: (s: ClientStream<Req, Res>) => void,
  ) {
    stream.on("data", (frame: MuxResponseFrame<Res>) => this.onFrame(frame));
    stream.on("error", (err: unknown) => this.fail(err));
    stream.on("end", () => this.fail({ code: status.UNAVAILABLE, details: "the server ended the stream" }));
  }

  /** An id not in flight on this stream (ids wrap at 2^32 - 1; 0 is never a call's). */
  takeId(): number {
    let id = this.nextId;
    while (this.calls.has(id)) id = id >= 0xffff_ffff ? 1 : id + 1;
    this.nextId = id >= 0xffff_ffff ? 1 : id + 1;
    return id;
  }

  /** Writes a frame (throws, before anything is written, for one that cannot be encoded). */
  send(frame: MuxRequestFrame<Req>): void {
    if (!this.gone) this.stream.write(this.encode(frame));
  }

  private onFrame(frame: MuxResponseFrame<Res>): void {
    if (frame.drain !== undefined) {
      this.draining = true;
      this.endIfIdle();
      return;
    }
    const call = this.calls.get(frame.id);
    if (call === undefined) return; // cancelled here already
    if (frame.message !== undefined) call.push(frame.message);
    else if (frame.end !== undefined) {
      this.calls.delete(frame.id);
      const end = frame.end;
      if (end.code === status.OK) call.settle(null);
      else {
        const err = appErrorOf(end.code, end.message, end.detail as ErrorDetail | undefined);
        if (err.reason === DRAINING && call.received === 0) {
          call.notStarted = err;
          call.settle(NOT_STARTED);
        } else call.settle(err);
      }
      this.endIfIdle();
    }
  }

  /** A call left this stream (ended or given up). */
  release(id: number): void {
    this.calls.delete(id);
    this.endIfIdle();
  }

  /** A draining stream half-closes once its calls have ended (the server then ends it). */
  private endIfIdle(): void {
    if (this.draining && this.calls.size === 0 && !this.gone) {
      this.gone = true;
      this.stream.end();
      this.onGone(this);
    }
  }

  fail(err: unknown): void {
    const wasGone = this.gone;
    this.gone = true;
    const code = (err as { code?: unknown })?.code;
    const unimplemented = code === status.UNIMPLEMENTED;
    for (const call of this.calls.values()) {
      if (unimplemented && call.received === 0) {
        call.notStarted = fromGrpcError(err);
        call.settle(NOT_STARTED);
      } else call.settle(fromGrpcError(err));
    }
    this.calls.clear();
    if (!wasGone) this.onGone(this);
  }
}

/**
 * The client side: calls of one server-streaming method over at most `streams` shared streams, opened as calls
 * come. `call` reads like `callStream`: an async iterable of the answer's messages that throws the peer's AppError;
 * breaking out of it or aborting `params.signal` cancels the call.
 */
export class MuxClient<Req, Res> {
  private readonly streams: ClientStream<Req, Res>[] = [];
  private readonly maxStreams: number;
  private readonly window: number;
  private fallbackUntil = 0;
  private closed = false;
  private readonly labels: { service: string; method: string };

  constructor(private readonly options: MuxClientOptions<Req, Res>) {
    this.maxStreams = Math.max(1, options.streams ?? 4);
    this.window = Math.max(0, options.window ?? 64);
    this.labels = splitMethod(options.path);
  }

  /** Streams open now (for tests and metrics). */
  get openStreams(): number {
    return this.streams.length;
  }

  async *call(request: Req, params: CallParams = {}): AsyncGenerator<Res> {
    const fallback = this.options.fallback;
    if (fallback !== undefined && Date.now() < this.fallbackUntil) {
      rpcMetrics.clientUnsharedCalls.inc(this.labels);
      yield* fallback(request, params);
      return;
    }
    const span = startClientCall(this.options.path);
    let code: number = status.CANCELLED;
    try {
      for (let attempt = 1; ; attempt++) {
        const outcome = yield* this.attempt(request, params, span);
        if (outcome === "done") {
          code = status.OK;
          return;
        }
        // The server never ran the call: it does not know the method (an older release), or it is draining.
        if (outcome.unimplemented) {
          code = status.UNIMPLEMENTED;
          if (fallback === undefined) throw outcome.error;
          span.finish(code);
          rpcMetrics.clientUnsharedCalls.inc(this.labels);
          yield* fallback(request, params);
          return;
        }
        // A draining server's refusal: another stream (a new one, on the channel's connection to a live server).
        if (attempt >= 3) {
          code = grpcStatusOf(outcome.error.code);
          throw outcome.error;
        }
      }
    } catch (err) {
      if (code === status.CANCELLED) code = grpcStatusOf(toAppError(err).code);
      throw err;
    } finally {
      span.finish(code);
    }
  }

  /**
   * One try on a stream: yields the answer and returns "done", throws the call's error, or returns the error of a
   * call the server never ran (draining, or no such method), which `call` may send elsewhere.
   */
  private async *attempt(
    request: Req,
    params: CallParams,
    span: ClientCall,
  ): AsyncGenerator<Res, "done" | { error: AppError; unimplemented: boolean }> {
    if (this.closed) throw new AppError("UNAVAILABLE", "the client is closed", { reason: "client_closed" });
    const signal = params.signal;
    if (signal?.aborted) throw new AppError("CANCELLED", "Cancelled on client");
    const stream = this.pick();
    const id = stream.takeId();
    const call = new PendingCall<Res>();
    stream.calls.set(id, call);
    const header: CallHeader = {
      timeoutMs: params.deadlineMs ? Math.max(1, Math.ceil(params.deadlineMs)) : 0,
      traceparent: "",
      tracestate: "",
      window: this.window,
    };
    span.inject(header, (h, k, v) => {
      if (k === "traceparent") h.traceparent = v;
      else if (k === "tracestate") h.tracestate = v;
    });
    try {
      stream.send({ id, start: request, header });
    } catch (err) {
      stream.release(id);
      throw new AppError("INTERNAL", `the request could not be encoded: ${(err as Error).message}`);
    }
    const onAbort = () => call.settle(new AppError("CANCELLED", "Cancelled on client"));
    signal?.addEventListener("abort", onAbort, { once: true });
    const timer = params.deadlineMs
      ? setTimeout(() => call.settle(new AppError("DEADLINE_EXCEEDED", "Deadline exceeded")), params.deadlineMs)
      : undefined;
    let taken = 0;
    let over = false;
    try {
      for (;;) {
        const message = call.queue.shift();
        if (message !== undefined) {
          if (this.window > 0 && ++taken >= this.window / 2) {
            stream.send({ id, credit: taken });
            taken = 0;
          }
          yield message;
          continue;
        }
        const end = call.end;
        if (end === null) {
          over = true;
          return "done";
        }
        if (end === NOT_STARTED) {
          over = true;
          const error = call.notStarted ?? new AppError("UNAVAILABLE", "the call did not start");
          const unimplemented = (error.cause as { code?: unknown } | undefined)?.code === status.UNIMPLEMENTED;
          if (unimplemented) this.fallbackUntil = Date.now() + (this.options.fallbackMs ?? 60_000);
          return { error, unimplemented };
        }
        if (end !== undefined) {
          // Ended by the server (its error), the stream breaking, the caller's signal or the deadline.
          over = stream.calls.get(id) !== call;
          throw end;
        }
        await new Promise<void>((resolve) => {
          call.wake = resolve;
        });
      }
    } finally {
      signal?.removeEventListener("abort", onAbort);
      clearTimeout(timer);
      // Still running at the server: the reader left (break, error downstream), the signal or the deadline fired.
      if (!over && stream.calls.get(id) === call) stream.send({ id, cancel: {} });
      stream.release(id);
    }
  }

  /** The open stream with the fewest calls in flight, or a new one while fewer than `streams` are open and all are busy. */
  private pick(): ClientStream<Req, Res> {
    let best: ClientStream<Req, Res> | undefined;
    for (const s of this.streams) {
      if (s.draining || s.gone) continue;
      if (best === undefined || s.calls.size < best.calls.size) best = s;
    }
    if (best !== undefined && (best.calls.size === 0 || this.streams.length >= this.maxStreams)) return best;
    const { client, method } = this.options;
    const raw = client.makeBidiStreamRequest(method.path, (b: Buffer) => b, method.responseDeserialize);
    const opened = new ClientStream<Req, Res>(
      raw,
      (frame) => method.requestSerialize(frame),
      (s) => this.forget(s),
    );
    this.streams.push(opened);
    rpcMetrics.clientSharedStreams.inc(this.labels);
    return opened;
  }

  private forget(s: ClientStream<Req, Res>): void {
    const i = this.streams.indexOf(s);
    if (i < 0) return;
    this.streams.splice(i, 1);
    rpcMetrics.clientSharedStreams.dec(this.labels);
  }

  /** Half-closes every stream (the server ends each once its calls are done) and takes no more calls. */
  close(): void {
    this.closed = true;
    for (const s of [...this.streams]) {
      s.draining = true;
      if (s.calls.size === 0) {
        s.gone = true;
        s.stream.end();
      }
    }
    rpcMetrics.clientSharedStreams.dec(this.labels, this.streams.length);
    this.streams.length = 0;
  }
}
