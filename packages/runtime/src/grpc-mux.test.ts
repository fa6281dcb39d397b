import { EventEmitter } from "node:events";
import type { Client, MethodDefinition } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { AppError } from "./errors.js";
import { callEndOf, DRAINING, MuxClient, type MuxRequestFrame, type MuxResponseFrame } from "./grpc-mux.js";

type In = MuxRequestFrame<string>;
type Out = MuxResponseFrame<string>;

/**
 * A stand-in for grpc-js' side of the streams: each stream opened is a fake duplex whose frames `answer` handles
 * (frames pass as JSON, so the encoding is real enough to fail on what JSON cannot carry).
 */
function fakeStreams(answer: (stream: number, frame: In, reply: (f: Out) => void) => void) {
  const opened: EventEmitter[] = [];
  const method = {
    path: "/test.v1.Svc/CallStream",
    requestSerialize: (f: In) => Buffer.from(JSON.stringify(f)),
    responseDeserialize: (b: Buffer) => JSON.parse(b.toString()) as Out,
  } as unknown as MethodDefinition<In, Out>;
  const client = {
    makeBidiStreamRequest: () => {
      const n = opened.length;
      const stream = Object.assign(new EventEmitter(), {
        write: (b: Buffer) => {
          const frame = JSON.parse(b.toString()) as In;
          setImmediate(() => answer(n, frame, (f) => stream.emit("data", f)));
          return true;
        },
        end: () => {},
      });
      opened.push(stream);
      return stream;
    },
  } as unknown as Client;
  return { method, client, opened };
}

async function collect(it: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const m of it) out.push(m);
  return out;
}

describe("MuxClient", () => {
  it("moves a call a draining server refused (before running it) to a new stream", async () => {
    const starts: number[] = [];
    const { method, client, opened } = fakeStreams((stream, frame, reply) => {
      if (frame.start === undefined) return;
      starts.push(stream);
      if (stream === 0) {
        reply({ id: 0, drain: {} });
        const refusal = new AppError("UNAVAILABLE", "shutting down", { reason: DRAINING });
        reply({ id: frame.id, end: callEndOf(refusal) });
        return;
      }
      reply({ id: frame.id, message: `answer to ${frame.start}` });
      reply({ id: frame.id, end: callEndOf(undefined) });
    });
    const mux = new MuxClient<string, string>({ path: "/test.v1.Svc/Call", method, client });
    expect(await collect(mux.call("hello"))).toEqual(["answer to hello"]);
    expect(starts).toEqual([0, 1]);
    expect(opened).toHaveLength(2);
    // The drained stream is gone; the next call goes to the live one.
    expect(await collect(mux.call("again"))).toEqual(["answer to again"]);
    expect(starts).toEqual([0, 1, 1]);
  });

  it("does not send a call elsewhere once its server has answered part of it", async () => {
    const { method, client } = fakeStreams((_stream, frame, reply) => {
      if (frame.start === undefined) return;
      reply({ id: frame.id, message: "partial" });
      const refusal = new AppError("UNAVAILABLE", "shutting down", { reason: DRAINING });
      reply({ id: frame.id, end: callEndOf(refusal) });
    });
    const mux = new MuxClient<string, string>({ path: "/test.v1.Svc/Call", method, client });
    const got: string[] = [];
    const err = await (async () => {
      for await (const m of mux.call("x")) got.push(m);
    })().catch((e) => e);
    expect(got).toEqual(["partial"]);
    expect(err).toMatchObject({ code: "UNAVAILABLE", reason: DRAINING });
  });

  it("fails only its own call for a request that cannot be encoded", async () => {
    const { method, client } = fakeStreams((_stream, frame, reply) => {
      if (frame.start === undefined) return;
      reply({ id: frame.id, message: "ok" });
      reply({ id: frame.id, end: callEndOf(undefined) });
    });
    const mux = new MuxClient<unknown, string>({
      path: "/test.v1.Svc/Call",
      method: method as unknown as MethodDefinition<MuxRequestFrame<unknown>, Out>,
      client,
    });
    await expect(collect(mux.call(10n as unknown))).rejects.toMatchObject({ code: "INTERNAL" });
    expect(await collect(mux.call("fine"))).toEqual(["ok"]);
  });
});
