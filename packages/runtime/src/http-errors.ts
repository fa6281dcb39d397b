import { type AppError, type ErrorCode, toAppError } from "./errors.js";

/** The OpenAI error body: `{ error: { message, type, code, param } }`, plus our request id. */
export interface OpenAIErrorBody {
  error: { message: string; type: string; code: string | null; param: string | null; request_id?: string };
}

const httpStatus: Record<ErrorCode, number> = {
  INVALID_ARGUMENT: 400,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  NOT_FOUND: 404,
  RESOURCE_EXHAUSTED: 429,
  FAILED_PRECONDITION: 400,
  UNAVAILABLE: 503,
  DEADLINE_EXCEEDED: 504,
  CANCELLED: 499,
  INTERNAL: 500,
};

const openAIType: Record<ErrorCode, string> = {
  INVALID_ARGUMENT: "invalid_request_error",
  UNAUTHENTICATED: "authentication_error",
  PERMISSION_DENIED: "permission_error",
  NOT_FOUND: "invalid_request_error",
  RESOURCE_EXHAUSTED: "rate_limit_error",
  FAILED_PRECONDITION: "invalid_request_error",
  UNAVAILABLE: "api_error",
  DEADLINE_EXCEEDED: "timeout_error",
  CANCELLED: "api_error",
  INTERNAL: "api_error",
};

/**
 * Maps an error to the HTTP status, headers and OpenAI error body the gateway sends. Upstream failures that are
 * not availability problems (a provider's 5xx answer) map to 502; an unreachable or overloaded backend to 503.
 */
export function toHttpError(
  err: unknown,
  requestId?: string,
): { status: number; body: OpenAIErrorBody; headers: Record<string, string>; error: AppError } {
  const e = toAppError(err);
  let statusCode = httpStatus[e.code];
  if (
    e.code === "UNAVAILABLE" &&
    e.origin === "upstream" &&
    e.upstreamStatus !== undefined &&
    e.upstreamStatus >= 500 &&
    e.upstreamStatus !== 503 &&
    e.upstreamStatus !== 529
  ) {
    statusCode = 502;
  }
  const headers: Record<string, string> = {};
  if (e.retryAfterMs !== undefined && e.retryAfterMs > 0)
    headers["retry-after"] = String(Math.ceil(e.retryAfterMs / 1000));
  const type = e.reason === "insufficient_quota" ? "insufficient_quota" : openAIType[e.code];
  return {
    status: statusCode,
    headers,
    error: e,
    body: {
      error: {
        message: e.message,
        type,
        code: e.reason ?? e.code.toLowerCase(),
        param: e.param ?? null,
        ...(requestId ? { request_id: requestId } : {}),
      },
    },
  };
}
