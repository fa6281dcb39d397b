import { Metadata, type ServiceError, type StatusObject, status } from "@grpc/grpc-js";
import { ErrorDetail } from "@tokenmesh/proto/common/v1/context";
import { AppError, type ErrorCode, toAppError } from "./errors.js";

/** The binary trailer that carries an AppError's fields across a gRPC hop. */
export const ERROR_DETAIL_KEY = "tokenmesh-error-bin";

const toStatus: Record<ErrorCode, status> = {
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  UNAUTHENTICATED: status.UNAUTHENTICATED,
  PERMISSION_DENIED: status.PERMISSION_DENIED,
  NOT_FOUND: status.NOT_FOUND,
  RESOURCE_EXHAUSTED: status.RESOURCE_EXHAUSTED,
  FAILED_PRECONDITION: status.FAILED_PRECONDITION,
  UNAVAILABLE: status.UNAVAILABLE,
  DEADLINE_EXCEEDED: status.DEADLINE_EXCEEDED,
  CANCELLED: status.CANCELLED,
  INTERNAL: status.INTERNAL,
};

const fromStatus = new Map<number, ErrorCode>(Object.entries(toStatus).map(([k, v]) => [v, k as ErrorCode]));

/** Maps an AppError code to its gRPC status code. */
export function grpcStatusOf(code: ErrorCode): status {
  return toStatus[code];
}

/**
 * Turns anything thrown into a gRPC status with the ErrorDetail trailer. Unknown errors become INTERNAL with a
 * generic message (the caller logs the original).
 */
export function toGrpcStatus(err: unknown): Partial<StatusObject> & { code: status; details: string } {
  const e = toAppError(err);
  const metadata = new Metadata();
  metadata.set(ERROR_DETAIL_KEY, Buffer.from(ErrorDetail.encode(errorDetailOf(e)).finish()));
  return { code: toStatus[e.code], details: e.message, metadata };
}

/** An AppError's fields as the ErrorDetail message (the trailer of a call, the end frame of a multiplexed one). */
export function errorDetailOf(e: AppError): ErrorDetail {
  return {
    code: e.code,
    message: e.message,
    retryable: e.retryable,
    origin: e.origin,
    param: e.param ?? "",
    retryAfterMs: e.retryAfterMs ?? 0,
    reason: e.reason ?? "",
    upstreamStatus: e.upstreamStatus ?? 0,
  };
}

/** The reason of an UNAVAILABLE that came from the transport, not from the peer (connection refused or reset). */
export const PEER_UNREACHABLE = "peer_unreachable";

/**
 * Turns a gRPC client error back into the AppError the peer raised (from the trailer), or, for errors that did not
 * come from a Tokenmesh handler (connection refused, deadline), an AppError derived from the status code.
 */
export function fromGrpcError(err: unknown): AppError {
  const se = err as Partial<ServiceError>;
  if (typeof se?.code !== "number") return toAppError(err);
  const raw = se.metadata?.get(ERROR_DETAIL_KEY)[0];
  let detail: ErrorDetail | undefined;
  if (raw instanceof Buffer) {
    try {
      detail = ErrorDetail.decode(raw);
    } catch {
      // fall through to the status code
    }
  }
  return appErrorOf(se.code, se.details || se.message || "", detail, err);
}

/**
 * The AppError a peer raised, from its status code, status message and ErrorDetail (when it sent one). Without the
 * detail (a transport failure, a deadline, a peer that is not a Tokenmesh service), derived from the status code.
 */
export function appErrorOf(code: number, message: string, detail: ErrorDetail | undefined, cause?: unknown): AppError {
  if (detail !== undefined) {
    return new AppError((detail.code as ErrorCode) || fromStatus.get(code) || "INTERNAL", detail.message, {
      retryable: detail.retryable,
      origin: detail.origin === "upstream" ? "upstream" : "internal",
      ...(detail.param ? { param: detail.param } : {}),
      ...(detail.retryAfterMs ? { retryAfterMs: detail.retryAfterMs } : {}),
      ...(detail.reason ? { reason: detail.reason } : {}),
      ...(detail.upstreamStatus ? { upstreamStatus: detail.upstreamStatus } : {}),
      cause,
    });
  }
  const appCode = fromStatus.get(code) ?? "INTERNAL";
  // A peer that cannot be reached is UNAVAILABLE and worth retrying; anything else keeps the code's default. Without
  // the peer's own error detail, UNAVAILABLE means the transport failed (refused, reset): `peer_unreachable`, which a
  // circuit breaker should not blame on a model.
  return new AppError(appCode, message || appCode, {
    cause,
    ...(appCode === "UNAVAILABLE" ? { reason: PEER_UNREACHABLE } : {}),
  });
}
