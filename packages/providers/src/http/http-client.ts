import { type AppError, abortedError, isAppError } from "@tokenmesh/runtime";
import { context, injectHeaders, recordSpanError, SpanKind, SpanStatusCode, trace, tracer } from "@tokenmesh/telemetry";
import { Agent, type Dispatcher } from "undici";
import {
  errorFromStatus,
  type HeaderBag,
  malformedError,
  parseProviderError,
  timeoutError,
  transportError,
} from "./errors.js";

export interface UpstreamHttpClientOptions {
  /** Most concurrent connections per upstream origin; further requests queue in the pool. Default 128. */
  connectionsPerOrigin?: number;
  /** How long an idle keep-alive connection is kept, in ms. Default 30 s (providers close theirs at ~60 s+). */
  keepAliveTimeoutMs?: number;
  /** TCP + TLS connect timeout, in ms. Default 10 s. */
  connectTimeoutMs?: number;
  /** Use this dispatcher instead of creating an Agent (tests, proxies). Not closed by `close()`. */
  dispatcher?: Dispatcher;
  /**
   * Told when each exchange ends (body read or disposed of): the request's `kind`, the HTTP status (or "error"
   * when no response came) and the seconds it took. Used for the upstream latency metric; must not throw.
   */
  onExchange?: (kind: string, status: string, seconds: number) => void;
}

export interface UpstreamRequest {
  /** Display name used in error messages, e.g. "OpenAI upstream". */
  provider: string;
  /** The provider as a metric label, e.g. "openai" (see `onExchange`). */
  kind: string;
  url: string;
  headers: Record<string, string>;
  /** JSON text. */
  body: string;
  /** The caller's signal: aborting it aborts the request and the body read, and yields CANCELLED. */
  signal: AbortSignal;
  /** Budget for the whole exchange (headers and body), in ms; past it the request is aborted (UNAVAILABLE). */
  timeoutMs: number;
}

/**
 * One upstream exchange with a 2xx status. Reading its body or disposing of it ends it; `dispose()` must be called
 * (in a finally) whatever happens, and aborts the request if the body was not read to its end, so the connection
 * is closed instead of leaking a half-read response.
 */
export class UpstreamExchange {
  private finished = false;

  constructor(
    readonly status: number,
    readonly headers: HeaderBag,
    private readonly body: Dispatcher.ResponseData["body"],
    private readonly classify: (err: unknown) => AppError,
    private readonly release: () => void,
  ) {}

  /** The body bytes as they arrive. Transport failures, timeouts and aborts are thrown as AppError. */
  async *chunks(): AsyncGenerator<Buffer> {
    try {
      for await (const chunk of this.body) yield chunk as Buffer;
      this.finished = true;
    } catch (err) {
      throw this.classify(err);
    }
  }

  /** The whole body parsed as JSON; unreadable JSON is UNAVAILABLE (a broken upstream, worth another attempt). */
  async json<T>(provider: string): Promise<T> {
    let text: string;
    try {
      text = await this.body.text();
      this.finished = true;
    } catch (err) {
      throw this.classify(err);
    }
    try {
      return JSON.parse(text) as T;
    } catch (err) {
      throw malformedError(provider, "answered with a body that is not JSON", err);
    }
  }

  /** Maps an error raised while consuming the exchange (e.g. by a parser) to the AppError a caller should see. */
  error(err: unknown): AppError {
    return this.classify(err);
  }

  /** Ends the exchange: aborts the request if its body was not fully read. Idempotent. */
  dispose(): void {
    if (!this.finished) {
      this.finished = true;
      this.body.destroy();
    }
    this.release();
  }
}

/** Largest error body read from a failed upstream response; the rest is discarded. */
const MAX_ERROR_BODY = 64 * 1024;

/**
 * The HTTP client engines use to call providers: one undici Agent keeping a pool of keep-alive connections per
 * origin, shared by every model on that origin. Errors are AppError only (see errors.ts for the mapping).
 */
export class UpstreamHttpClient {
  private readonly dispatcher: Dispatcher;
  private readonly owned: boolean;
  private readonly onExchange: UpstreamHttpClientOptions["onExchange"];

  constructor(options: UpstreamHttpClientOptions = {}) {
    this.onExchange = options.onExchange;
    this.owned = options.dispatcher === undefined;
    this.dispatcher =
      options.dispatcher ??
      new Agent({
        connections: options.connectionsPerOrigin ?? 128,
        keepAliveTimeout: options.keepAliveTimeoutMs ?? 30_000,
        connect: { timeout: options.connectTimeoutMs ?? 10_000 },
      });
  }

  /**
   * Sends a POST and waits for the response head. A non-2xx answer is read (bounded) and thrown as the mapped
   * AppError; a 2xx answer is returned as an exchange whose body the caller reads and then disposes of.
   * The timeout keeps running until the exchange is disposed of.
   */
  async post(req: UpstreamRequest): Promise<UpstreamExchange> {
    if (req.signal.aborted) throw abortedError(req.signal);
    const target = upstreamTarget(req.url);
    const controller = new AbortController();
    let timedOut = false;
    const onAbort = (): void => controller.abort(req.signal.reason);
    req.signal.addEventListener("abort", onAbort, { once: true });
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, req.timeoutMs);
    const started = performance.now();
    // The exchange's CLIENT span; its context goes upstream as W3C traceparent, as OpenTelemetry's undici
    // instrumentation did (attributes only when the span is recorded).
    const parent = context.active();
    const span = tracer().startSpan("POST", { kind: SpanKind.CLIENT }, parent);
    if (span.isRecording()) {
      span.setAttributes({
        "http.request.method": "POST",
        "server.address": target.host,
        "url.path": target.path,
        "tokenmesh.provider": req.kind,
      });
    }
    const headers = { ...req.headers };
    injectHeaders(headers, trace.setSpan(parent, span));
    let status = "error";
    let released = false;
    const release = (): void => {
      clearTimeout(timer);
      req.signal.removeEventListener("abort", onAbort);
      if (!released) {
        released = true;
        this.onExchange?.(req.kind, status, (performance.now() - started) / 1000);
        if (span.isRecording() && status !== "error") {
          span.setAttribute("http.response.status_code", Number(status));
          if (Number(status) >= 400) span.setStatus({ code: SpanStatusCode.ERROR });
        }
        span.end();
      }
    };
    const classify = (err: unknown): AppError => {
      if (req.signal.aborted) return abortedError(req.signal);
      if (timedOut) return timeoutError(req.provider, req.timeoutMs);
      if (isAppError(err)) return err;
      return transportError(req.provider, err);
    };

    let res: Dispatcher.ResponseData;
    try {
      res = await this.dispatcher.request({
        origin: target.origin,
        path: target.path,
        method: "POST",
        headers,
        body: req.body,
        signal: controller.signal,
        // Our own timer bounds the exchange; undici's idle timers would fire on slow-but-alive streams.
        headersTimeout: req.timeoutMs,
        bodyTimeout: req.timeoutMs,
      });
    } catch (err) {
      const e = classify(err);
      recordSpanError(span, e);
      release();
      throw e;
    }

    status = String(res.statusCode);
    if (res.statusCode >= 200 && res.statusCode < 300) {
      return new UpstreamExchange(res.statusCode, res.headers, res.body, classify, release);
    }
    let text: string;
    try {
      // Breaking out of the read early destroys the body, so an oversized error page does not hold the socket.
      text = await readBounded(res.body, MAX_ERROR_BODY);
    } catch (err) {
      res.body.destroy();
      throw classify(err);
    } finally {
      release();
    }
    throw errorFromStatus(req.provider, res.statusCode, res.headers, parseProviderError(text));
  }

  /** Closes idle connections and refuses new requests; in-flight ones finish. */
  async close(): Promise<void> {
    if (this.owned) await this.dispatcher.close();
  }
}

/** A provider URL's origin and path, parsed once per distinct URL (a few per model catalog), not per request. */
const targets = new Map<string, { origin: string; host: string; path: string }>();
function upstreamTarget(raw: string): { origin: string; host: string; path: string } {
  let t = targets.get(raw);
  if (t === undefined) {
    const url = new URL(raw);
    t = { origin: url.origin, host: url.host, path: url.pathname + url.search };
    // Bounded: URLs come from the operator's catalog, but a catalog reloaded many times must not grow this forever.
    if (targets.size >= 1_024) targets.clear();
    targets.set(raw, t);
  }
  return t;
}

async function readBounded(body: AsyncIterable<unknown>, limit: number): Promise<string> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const buf = chunk as Buffer;
    parts.push(buf);
    size += buf.length;
    if (size >= limit) break;
  }
  return Buffer.concat(parts).toString("utf8").slice(0, limit);
}
