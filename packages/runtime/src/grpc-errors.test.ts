import { describe, expect, it } from "vitest";
import { AppError, BudgetExceededError } from "./errors.js";
import { fromGrpcError, toGrpcStatus } from "./grpc-errors.js";
import { toHttpError } from "./http-errors.js";

/** What a client sees: the status object the server sends, as a ServiceError. */
function roundTrip(err: unknown): AppError {
  const st = toGrpcStatus(err);
  return fromGrpcError(Object.assign(new Error(st.details), st));
}

describe("AppError across a gRPC hop", () => {
  it("keeps code, retryability, origin, retry-after, reason and upstream status", () => {
    const back = roundTrip(
      new AppError("RESOURCE_EXHAUSTED", "slow down", {
        retryable: true,
        origin: "upstream",
        retryAfterMs: 7000,
        reason: "upstream_rate_limited",
        upstreamStatus: 429,
      }),
    );
    expect(back).toMatchObject({
      code: "RESOURCE_EXHAUSTED",
      retryable: true,
      origin: "upstream",
      retryAfterMs: 7000,
      reason: "upstream_rate_limited",
      upstreamStatus: 429,
    });
    expect(back.message).toBe("slow down");
  });

  it("hides unknown errors behind INTERNAL", () => {
    const back = roundTrip(new TypeError("secret detail"));
    expect(back.code).toBe("INTERNAL");
    expect(back.message).not.toContain("secret detail");
  });
});

describe("toHttpError", () => {
  it("answers 502 for a provider's 5xx and 503 when it cannot be reached", () => {
    expect(toHttpError(new AppError("UNAVAILABLE", "x", { origin: "upstream", upstreamStatus: 500 })).status).toBe(502);
    expect(toHttpError(new AppError("UNAVAILABLE", "x", { origin: "upstream" })).status).toBe(503);
  });

  it("uses OpenAI's insufficient_quota for budgets and keeps retry-after", () => {
    const r = toHttpError(new BudgetExceededError());
    expect(r.status).toBe(429);
    expect(r.body.error.type).toBe("insufficient_quota");
    expect(r.body.error.code).toBe("insufficient_quota");
    expect(toHttpError(new AppError("RESOURCE_EXHAUSTED", "x", { retryAfterMs: 1500 })).headers["retry-after"]).toBe(
      "2",
    );
  });
});
