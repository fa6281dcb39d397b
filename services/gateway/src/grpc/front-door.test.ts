import type { MethodDefinition } from "@grpc/grpc-js";
import { AppError, type CallContext, type ServerStreamHandler, type UnaryHandler } from "@tokenmesh/runtime";
import { describe, expect, it } from "vitest";
import { frontDoor } from "./front-door.js";

// A two-method service whose decoder, like protobuf's, throws on bytes that are not a message.
const decode = (b: Buffer) => {
  if (b[0] === 0xff) throw new RangeError("premature EOF");
  return b.toString();
};
const method = <S extends boolean>(name: string, responseStream: S) =>
  ({
    path: `/test.v1.TestService/${name}`,
    requestStream: false,
    responseStream,
    requestSerialize: (s: string) => Buffer.from(s),
    requestDeserialize: decode,
    responseSerialize: (s: string) => Buffer.from(s),
    responseDeserialize: (b: Buffer) => b.toString(),
  }) as const satisfies MethodDefinition<string, string>;
const definition = { echo: method("Echo", false), watch: method("Watch", true) };
/** The handler shapes of the two methods (the generic Handlers type cannot tell them apart from these definitions). */
type TestHandlers = { echo: UnaryHandler<string, string>; watch: ServerStreamHandler<string, string> };
const doorOf = (handlers: TestHandlers) => {
  const door = frontDoor(definition, handlers as never);
  return { definition: door.definition, handlers: door.handlers as unknown as TestHandlers };
};
const ctx = {} as CallContext;

async function drain(it: AsyncIterable<unknown>): Promise<unknown[]> {
  const out: unknown[] = [];
  for await (const v of it) out.push(v);
  return out;
}

describe("frontDoor", () => {
  const fail = (message: string) => {
    throw new AppError("NOT_FOUND", message, { reason: "model_not_found", param: "model" });
  };
  const door = doorOf({
    echo: async (req: string) => (req.startsWith("fail:") ? fail(req.slice(5)) : req),
    watch: async function* (req: string) {
      yield req;
      if (req.startsWith("fail:")) fail(req.slice(5));
    },
  });

  it("passes decodable messages and answers through", async () => {
    const req = door.definition.echo.requestDeserialize(Buffer.from("hi"));
    await expect(door.handlers.echo(req, ctx)).resolves.toBe("hi");
    await expect(
      drain(door.handlers.watch(door.definition.watch.requestDeserialize(Buffer.from("a")), ctx)),
    ).resolves.toEqual(["a"]);
  });

  it("refuses an undecodable message INVALID_ARGUMENT instead of letting grpc-js answer INTERNAL", async () => {
    const garbage = Buffer.from([0xff, 0x01]);
    const req = door.definition.echo.requestDeserialize(garbage);
    await expect(door.handlers.echo(req, ctx)).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
      message: "The request message is not a valid Echo request.",
    });
    await expect(
      drain(door.handlers.watch(door.definition.watch.requestDeserialize(garbage), ctx)),
    ).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
    });
  });

  it("clips an error message that echoes a huge client value, keeping code, reason and surrogate pairs whole", async () => {
    const err = await door.handlers.echo(`fail:The model '${"😀".repeat(50_000)}' does not exist`, ctx).catch((e) => e);
    expect(err).toBeInstanceOf(AppError);
    expect(err).toMatchObject({ code: "NOT_FOUND", reason: "model_not_found", param: "model" });
    expect(err.message.length).toBeLessThanOrEqual(1_024);
    expect(err.message.endsWith("…")).toBe(true);
    // grpc-js percent-encodes the message; a lone surrogate would throw there.
    expect(() => encodeURI(err.message)).not.toThrow();
    const streamed = await drain(door.handlers.watch(`fail:${"x".repeat(100_000)}`, ctx)).catch((e) => e);
    expect(streamed.message.length).toBeLessThanOrEqual(1_024);
  });

  it("leaves short messages and non-AppErrors as they are", async () => {
    await expect(door.handlers.echo("fail:no such model", ctx)).rejects.toMatchObject({ message: "no such model" });
    const plain = doorOf({
      echo: async () => {
        throw new TypeError("x".repeat(5_000));
      },
      watch: async function* () {},
    });
    await expect(plain.handlers.echo("a", ctx)).rejects.toBeInstanceOf(TypeError);
  });
});
