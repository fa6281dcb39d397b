/**
 * The closed set of error codes, aligned with gRPC status codes so one mapping serves gRPC and HTTP.
 */
export const ErrorCodes = [
  "INVALID_ARGUMENT",
  "UNAUTHENTICATED",
  "PERMISSION_DENIED",
  "NOT_FOUND",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "UNAVAILABLE",
  "DEADLINE_EXCEEDED",
  "CANCELLED",
  "INTERNAL",
] as const;
export type ErrorCode = (typeof ErrorCodes)[number];

/** Where a failure came from: our own code, or a provider / peer we called. */
export type ErrorOrigin = "internal" | "upstream";

export interface AppErrorOptions {
  /** Whether the same request may succeed if tried again (the router retries only these). */
  retryable?: boolean;
  origin?: ErrorOrigin;
  cause?: unknown;
  /** The request field at fault. */
  param?: string;
  /** For RESOURCE_EXHAUSTED: when a retry may succeed, in milliseconds. */
  retryAfterMs?: number;
  /** A finer machine-readable reason (becomes the OpenAI error `code`), e.g. "model_not_found". */
  reason?: string;
  /** HTTP status of an upstream failure, kept for metrics and for choosing 502 vs 503. */
  upstreamStatus?: number;
}

/**
 * The one error type services raise on purpose. Anything else that escapes a handler is reported as INTERNAL
 * with a generic message; its details go to the log and the span only.
 */
export class AppError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly origin: ErrorOrigin;
  readonly param: string | undefined;
  readonly retryAfterMs: number | undefined;
  readonly reason: string | undefined;
  readonly upstreamStatus: number | undefined;

  constructor(code: ErrorCode, message: string, options: AppErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "AppError";
    this.code = code;
    this.retryable = options.retryable ?? defaultRetryable(code);
    this.origin = options.origin ?? "internal";
    this.param = options.param;
    this.retryAfterMs = options.retryAfterMs;
    this.reason = options.reason;
    this.upstreamStatus = options.upstreamStatus;
  }
}

function defaultRetryable(code: ErrorCode): boolean {
  return code === "UNAVAILABLE" || code === "DEADLINE_EXCEEDED";
}

/** A hard budget would be overspent by this request. */
export class BudgetExceededError extends AppError {
  constructor(message = "Budget exceeded for this key", options: AppErrorOptions = {}) {
    super("RESOURCE_EXHAUSTED", message, { reason: "insufficient_quota", retryable: false, ...options });
    this.name = "BudgetExceededError";
  }
}

/** A provider or peer could not be reached or answered 5xx. */
export class UpstreamUnavailableError extends AppError {
  constructor(message: string, options: AppErrorOptions = {}) {
    super("UNAVAILABLE", message, { retryable: true, origin: "upstream", ...options });
    this.name = "UpstreamUnavailableError";
  }
}

/** A bounded queue is full, or a rate limit is hit. */
export class ResourceExhaustedError extends AppError {
  constructor(message: string, options: AppErrorOptions = {}) {
    super("RESOURCE_EXHAUSTED", message, { retryable: true, ...options });
    this.name = "ResourceExhaustedError";
  }
}

/** Whether a value is an AppError (also across duplicated module instances). */
export function isAppError(err: unknown): err is AppError {
  return (
    err instanceof AppError ||
    (err instanceof Error && (ErrorCodes as readonly string[]).includes((err as AppError).code) && "retryable" in err)
  );
}

/** Wraps anything thrown into an AppError; unknown errors become INTERNAL with a generic message. */
export function toAppError(err: unknown): AppError {
  if (isAppError(err)) return err;
  if (err instanceof Error && err.name === "AbortError")
    return new AppError("CANCELLED", "Request cancelled", { cause: err });
  return new AppError("INTERNAL", "Internal error", { cause: err, retryable: false });
}
