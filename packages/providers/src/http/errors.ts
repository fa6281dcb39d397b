import { AppError, UpstreamUnavailableError } from "@tokenmesh/runtime";

/** Response headers as undici gives them. */
export type HeaderBag = Record<string, string | string[] | undefined>;

/** What a provider says about a failure, from either wire format (OpenAI or Anthropic). */
export interface ProviderError {
  message?: string;
  /** OpenAI `error.type` ("invalid_request_error", "server_error"), Anthropic `error.type` ("overloaded_error"). */
  type?: string;
  /** OpenAI `error.code` ("model_not_found", "invalid_api_key"). */
  code?: string;
  param?: string;
}

/** Longest provider message kept in an AppError: enough to act on, bounded against HTML error pages. */
const MAX_MESSAGE = 1000;

/**
 * Reads a provider error from a response body. Understands OpenAI's `{error: {message, type, code, param}}` and
 * Anthropic's `{type: "error", error: {type, message}}`; anything else yields its (trimmed) text as the message.
 */
export function parseProviderError(text: string): ProviderError {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    const trimmed = text.trim();
    return trimmed === "" ? {} : { message: trimmed.slice(0, MAX_MESSAGE) };
  }
  return providerErrorFromJson(body);
}

/** Like parseProviderError, for a body already parsed (e.g. an in-stream error event). */
export function providerErrorFromJson(body: unknown): ProviderError {
  if (typeof body !== "object" || body === null) return {};
  const raw = (body as { error?: unknown }).error;
  const err =
    typeof raw === "object" && raw !== null ? (raw as Record<string, unknown>) : (body as Record<string, unknown>);
  const out: ProviderError = {};
  if (typeof err.message === "string") out.message = err.message.slice(0, MAX_MESSAGE);
  else if (typeof raw === "string") out.message = raw.slice(0, MAX_MESSAGE);
  if (typeof err.type === "string" && err.type !== "error") out.type = err.type;
  if (typeof err.code === "string") out.code = err.code;
  if (typeof err.param === "string") out.param = err.param;
  return out;
}

function header(headers: HeaderBag, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/**
 * When a rate-limited request may be retried, in ms: `retry-after-ms` (OpenAI's precise variant) first, then
 * `retry-after` as delta-seconds (fractions allowed) or an HTTP date. Undefined when absent or unreadable.
 */
export function parseRetryAfter(headers: HeaderBag, nowMs: number = Date.now()): number | undefined {
  const ms = header(headers, "retry-after-ms");
  if (ms !== undefined && ms.trim() !== "") {
    const n = Number(ms);
    if (Number.isFinite(n) && n >= 0) return Math.ceil(n);
  }
  const ra = header(headers, "retry-after");
  if (ra === undefined || ra.trim() === "") return undefined;
  const seconds = Number(ra);
  if (Number.isFinite(seconds)) return seconds >= 0 ? Math.ceil(seconds * 1000) : undefined;
  const date = Date.parse(ra);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - nowMs);
}

function withDetail(prefix: string, pe: ProviderError): string {
  return pe.message ? `${prefix}: ${pe.message}` : prefix;
}

/**
 * Maps an upstream HTTP failure status to an AppError with origin "upstream" and `upstreamStatus` kept:
 * 429 → RESOURCE_EXHAUSTED retryable (with retryAfterMs); 408, 5xx and 529 → UNAVAILABLE retryable;
 * 401/403 → PERMISSION_DENIED; 404 → NOT_FOUND; other 4xx → INVALID_ARGUMENT; all non-retryable except as said.
 * The provider's own message is kept in the AppError message.
 */
export function errorFromStatus(provider: string, status: number, headers: HeaderBag, pe: ProviderError): AppError {
  const common = { origin: "upstream" as const, upstreamStatus: status };
  if (status === 429) {
    const retryAfterMs = parseRetryAfter(headers);
    return new AppError("RESOURCE_EXHAUSTED", withDetail(`${provider} rate limit reached (429)`, pe), {
      ...common,
      retryable: true,
      reason: "upstream_rate_limited",
      ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
    });
  }
  if (status === 401 || status === 403) {
    return new AppError("PERMISSION_DENIED", withDetail(`${provider} refused the upstream API key (${status})`, pe), {
      ...common,
      retryable: false,
      reason: "upstream_auth_failed",
    });
  }
  if (status === 404) {
    const aboutModel =
      pe.code === "model_not_found" || pe.type === "not_found_error" || /model/i.test(pe.message ?? "");
    return new AppError("NOT_FOUND", withDetail(`${provider} answered 404`, pe), {
      ...common,
      retryable: false,
      ...(aboutModel ? { reason: "model_not_found" } : {}),
    });
  }
  if (status === 408 || status >= 500 || status < 200) {
    return new UpstreamUnavailableError(withDetail(`${provider} unavailable (${status})`, pe), {
      ...common,
      ...(status === 529 || pe.type === "overloaded_error" ? { reason: "upstream_overloaded" } : {}),
    });
  }
  return new AppError("INVALID_ARGUMENT", withDetail(`${provider} rejected the request (${status})`, pe), {
    ...common,
    retryable: false,
    ...(pe.param === undefined ? {} : { param: pe.param }),
    ...(pe.code === undefined ? {} : { reason: pe.code }),
  });
}

/** The HTTP status a provider's error type stands for, for errors that arrive inside a 200 stream. */
const STATUS_OF_TYPE: Record<string, number> = {
  invalid_request_error: 400,
  authentication_error: 401,
  permission_error: 403,
  not_found_error: 404,
  request_too_large: 413,
  rate_limit_error: 429,
  api_error: 500,
  server_error: 500,
  overloaded_error: 529,
};

/**
 * Maps an error that arrived inside a stream (Anthropic `event: error`, OpenAI `data: {"error": …}`) by its type;
 * unknown types count as a server failure (UNAVAILABLE, retryable), since the stream broke on the provider's side.
 */
export function errorFromStreamEvent(provider: string, pe: ProviderError): AppError {
  const status =
    (pe.type !== undefined ? STATUS_OF_TYPE[pe.type] : undefined) ?? (pe.code === "rate_limit_exceeded" ? 429 : 500);
  return errorFromStatus(provider, status, {}, pe);
}

/** The per-attempt `timeout_ms` of the model passed: UNAVAILABLE, retryable (another attempt may be faster). */
export function timeoutError(provider: string, timeoutMs: number): AppError {
  return new UpstreamUnavailableError(`${provider} did not answer within ${timeoutMs} ms`, {
    reason: "upstream_timeout",
  });
}

/** A connection could not be made or broke (refused, reset, closed mid-body): UNAVAILABLE, retryable. */
export function transportError(provider: string, err: unknown): AppError {
  const code = typeof err === "object" && err !== null ? (err as { code?: unknown }).code : undefined;
  const what = typeof code === "string" ? code : err instanceof Error ? err.message : "unknown error";
  return new UpstreamUnavailableError(`${provider} connection failed (${what})`, { cause: err });
}

/** A 2xx answer we cannot read, or a stream that ended without its terminator. */
export function malformedError(provider: string, detail: string, cause?: unknown): AppError {
  return new UpstreamUnavailableError(`${provider} ${detail}`, cause === undefined ? {} : { cause });
}

/** The env var naming the model's key is unset: FAILED_PRECONDITION, not retryable (an operator must set it). */
export function missingKeyError(envName: string, modelId: string): AppError {
  return new AppError("FAILED_PRECONDITION", `API key env var ${envName} is not set (model ${modelId})`, {
    retryable: false,
    reason: "upstream_key_missing",
  });
}
