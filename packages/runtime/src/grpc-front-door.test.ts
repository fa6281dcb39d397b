import type { MethodDefinition } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { AppError } from "./errors.js";
import { bounded, decoded, decodeSafely } from "./grpc-front-door.js";

// A method whose decoder, like protobuf's, throws on bytes that are not a message.
const echo = {
  path: "/test.v1.TestService/Echo",
  requestStream: false,
  responseStream: false,
  requestSerialize: (s: string) => Buffer.from(s),
  requestDeserialize: (b: Buffer) => {
    if (b[0] === 0xff) throw new RangeError("premature EOF");
    return b.toString();
  },
  responseSerialize: (s: string) => Buffer.from(s),
  responseDeserialize: (b: Buffer) => b.toString(),
} as const satisfies MethodDefinition<string, string>;

describe("decodeSafely / decoded", () => {
  const safe = decodeSafely(echo);

  it("passes decodable messages through", () => {
    expect(decoded(safe.requestDeserialize(Buffer.from("hi")))).toBe("hi");
  });

  it("refuses an undecodable message INVALID_ARGUMENT instead of letting grpc-js answer INTERNAL", () => {
    const req = safe.requestDeserialize(Buffer.from([0xff, 0x01]));
    expect(() => decoded(req)).toThrowError(
      expect.objectContaining({
        code: "INVALID_ARGUMENT",
        message: "The request message is not a valid Echo request.",
      }),
    );
  });

  it("keeps a client-streaming method's decoder", () => {
    const streaming = { ...echo, requestStream: true } as unknown as MethodDefinition<string, string>;
    expect(decodeSafely(streaming)).toBe(streaming);
  });
});

describe("bounded", () => {
  const fail = (message: string) => new AppError("NOT_FOUND", message, { reason: "model_not_found", param: "model" });

  it("clips an error message that echoes a huge client value, keeping code, reason and surrogate pairs whole", () => {
    const err = bounded(fail(`The model '${"😀".repeat(50_000)}' does not exist`)) as AppError;
    expect(err).toBeInstanceOf(AppError);
    expect(err).toMatchObject({ code: "NOT_FOUND", reason: "model_not_found", param: "model" });
    expect(err.message.length).toBeLessThanOrEqual(1_024);
    expect(err.message.endsWith("…")).toBe(true);
    // grpc-js percent-encodes the message; a lone surrogate would throw there.
    expect(() => encodeURI(err.message)).not.toThrow();
    const param = bounded(new AppError("INVALID_ARGUMENT", "bad", { param: "p".repeat(10_000) })) as AppError;
    expect(param.param?.length).toBeLessThanOrEqual(256);
  });

  it("leaves short messages and non-AppErrors as they are", () => {
    const short = fail("no such model");
    expect(bounded(short)).toBe(short);
    const plain = new TypeError("x".repeat(5_000));
    expect(bounded(plain)).toBe(plain);
  });
});
