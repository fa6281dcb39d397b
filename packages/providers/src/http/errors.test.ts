import { describe, expect, it } from "vitest";
import { errorFromStatus, errorFromStreamEvent, parseProviderError, parseRetryAfter } from "./errors.js";

describe("parseRetryAfter", () => {
  const now = Date.parse("2025-01-01T00:00:00Z");
  it("reads delta seconds, fractions included", () => {
    expect(parseRetryAfter({ "retry-after": "20" }, now)).toBe(20_000);
    expect(parseRetryAfter({ "retry-after": "0.5" }, now)).toBe(500);
  });
  it("reads an HTTP date relative to now, never negative", () => {
    expect(parseRetryAfter({ "retry-after": "Wed, 01 Jan 2025 00:00:30 GMT" }, now)).toBe(30_000);
    expect(parseRetryAfter({ "retry-after": "Tue, 31 Dec 2024 23:00:00 GMT" }, now)).toBe(0);
  });
  it("prefers retry-after-ms", () => {
    expect(parseRetryAfter({ "retry-after": "20", "retry-after-ms": "1500.2" }, now)).toBe(1501);
  });
  it("is undefined when absent or unreadable", () => {
    expect(parseRetryAfter({}, now)).toBeUndefined();
    expect(parseRetryAfter({ "retry-after": "soon" }, now)).toBeUndefined();
  });
});

describe("parseProviderError", () => {
  it("reads OpenAI and Anthropic error bodies", () => {
    expect(
      parseProviderError('{"error":{"message":"bad","type":"invalid_request_error","param":"x","code":"c"}}'),
    ).toEqual({
      message: "bad",
      type: "invalid_request_error",
      param: "x",
      code: "c",
    });
    expect(parseProviderError('{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}')).toEqual({
      message: "Overloaded",
      type: "overloaded_error",
    });
  });
  it("keeps non-JSON text, bounded", () => {
    expect(parseProviderError("<html>Bad gateway</html>").message).toBe("<html>Bad gateway</html>");
    expect(parseProviderError("x".repeat(5000)).message).toHaveLength(1000);
  });
});

describe("errorFromStatus", () => {
  const cases: Array<[number, string, boolean]> = [
    [400, "INVALID_ARGUMENT", false],
    [422, "INVALID_ARGUMENT", false],
    [401, "PERMISSION_DENIED", false],
    [403, "PERMISSION_DENIED", false],
    [404, "NOT_FOUND", false],
    [408, "UNAVAILABLE", true],
    [429, "RESOURCE_EXHAUSTED", true],
    [500, "UNAVAILABLE", true],
    [502, "UNAVAILABLE", true],
    [503, "UNAVAILABLE", true],
    [529, "UNAVAILABLE", true],
  ];
  it.each(cases)("maps %i to %s (retryable %s) with origin upstream and the status kept", (status, code, retryable) => {
    const err = errorFromStatus("P", status, {}, { message: "provider text" });
    expect(err).toMatchObject({ code, retryable, origin: "upstream", upstreamStatus: status });
    expect(err.message).toContain("provider text");
  });
  it("keeps retry-after on 429", () => {
    expect(errorFromStatus("P", 429, { "retry-after": "3" }, {}).retryAfterMs).toBe(3000);
  });
  it("marks a missing model as model_not_found", () => {
    expect(errorFromStatus("P", 404, {}, { code: "model_not_found" }).reason).toBe("model_not_found");
  });
});

describe("errorFromStreamEvent", () => {
  it("maps by the provider's error type", () => {
    expect(errorFromStreamEvent("P", { type: "overloaded_error" })).toMatchObject({
      code: "UNAVAILABLE",
      upstreamStatus: 529,
    });
    expect(errorFromStreamEvent("P", { type: "rate_limit_error" })).toMatchObject({ code: "RESOURCE_EXHAUSTED" });
    expect(errorFromStreamEvent("P", { type: "invalid_request_error" })).toMatchObject({ code: "INVALID_ARGUMENT" });
    expect(errorFromStreamEvent("P", { type: "something_new" })).toMatchObject({
      code: "UNAVAILABLE",
      retryable: true,
    });
  });
});
