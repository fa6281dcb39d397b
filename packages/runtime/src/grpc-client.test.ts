import { Metadata, status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { callStream, callUnary, withoutCallerStack } from "./grpc-client.js";

/**
 * A server stream as grpc-js hands it out: messages until the server ends it; `cancel()` ends the iteration with a
 * CANCELLED status error. This one never ends by itself, so only a cancel stops it.
 */
function endlessStream() {
  let cancelled = false;
  let wake: (() => void) | undefined;
  const stream = {
    cancels: 0,
    cancel() {
      stream.cancels++;
      cancelled = true;
      wake?.();
    },
    async *[Symbol.asyncIterator]() {
      for (let i = 0; ; i++) {
        if (cancelled)
          throw Object.assign(new Error("Cancelled on client"), { code: status.CANCELLED, metadata: new Metadata() });
        yield i;
        await new Promise<void>((r) => {
          wake = r;
          setImmediate(r);
        });
      }
    },
  };
  return stream;
}

describe("callStream", () => {
  it("cancels the call when the signal aborts while reading", async () => {
    const stream = endlessStream();
    const ctrl = new AbortController();
    const seen: number[] = [];
    const read = (async () => {
      for await (const n of callStream(() => stream as never, {}, { signal: ctrl.signal })) {
        seen.push(n as number);
        if (seen.length === 3) ctrl.abort();
      }
    })();
    await expect(read).rejects.toMatchObject({ code: "CANCELLED" });
    expect(stream.cancels).toBeGreaterThan(0);
  });

  it("cancels a call whose signal was aborted before the stream was first read", async () => {
    const stream = endlessStream();
    const ctrl = new AbortController();
    const it = callStream(() => stream as never, {}, { signal: ctrl.signal });
    ctrl.abort();
    // Without the check the abort event is gone and this stream would be read forever.
    await expect(it.next()).rejects.toMatchObject({ code: "CANCELLED" });
    expect(stream.cancels).toBeGreaterThan(0);
  });
});

describe("withoutCallerStack", () => {
  it("starts calls with no stack capture and restores the limit, also when the start throws", async () => {
    const before = Error.stackTraceLimit;
    const seen: number[] = [];
    const stream = endlessStream();
    const it = callStream(() => {
      seen.push(Error.stackTraceLimit);
      return stream as never;
    }, {});
    await it.next();
    await it.return(undefined);
    const unary = callUnary(
      (_req: unknown, _md: Metadata, _opts: unknown, cb: (err: Error | null, res: number) => void) => {
        seen.push(Error.stackTraceLimit);
        setImmediate(() => cb(null, 7));
        return { cancel() {} };
      },
      {},
    );
    await expect(unary).resolves.toBe(7);
    expect(seen).toEqual([0, 0]);
    expect(Error.stackTraceLimit).toBe(before);
    expect(() =>
      withoutCallerStack(() => {
        throw new Error("no channel");
      }),
    ).toThrow("no channel");
    expect(Error.stackTraceLimit).toBe(before);
    // Errors made after the start have their frames.
    expect(new Error("later").stack?.split("\n").length).toBeGreaterThan(1);
  });
});
