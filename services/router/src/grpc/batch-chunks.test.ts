import type { ChatChunk } from "@tokenmesh/proto/common/v1/chat";
import { RouteInfo, type RouteResponse } from "@tokenmesh/proto/router/v1/router";
import { describe, expect, it } from "vitest";
import { batchChunks } from "./batch-chunks.js";

const route = RouteInfo.fromPartial({ model: "m", reason: "model:m" });
const chunk = (content: string) => ({ id: "c", choices: [{ content }] }) as unknown as ChatChunk;
const nextTurn = () => new Promise((r) => setTimeout(r, 1));

/** The chunks' texts as the gateway reads them: each message's chunk, then its more_chunks. */
function texts(out: RouteResponse[]): string[] {
  return out.flatMap((m) =>
    [...(m.chunk ? [m.chunk] : []), ...(m.moreChunks?.chunks ?? [])].map((c) => c.choices[0]?.content ?? ""),
  );
}

async function collect(source: AsyncIterable<RouteResponse>) {
  const out: RouteResponse[] = [];
  let error: unknown;
  try {
    for await (const ev of batchChunks(source)) out.push(ev);
  } catch (err) {
    error = err;
  }
  return { out, error };
}

describe("batchChunks", () => {
  it("sends the first chunk alone and the chunks ready in one turn together", async () => {
    async function* source(): AsyncGenerator<RouteResponse> {
      yield { chunk: chunk("a"), chunkRoute: route };
      for (const t of ["b", "c", "d", "e"]) yield { chunk: chunk(t) };
    }
    const { out } = await collect(source());
    expect(out).toHaveLength(2);
    expect(out[0]).toEqual({ chunk: chunk("a"), chunkRoute: route });
    expect(out[1]?.chunk).toEqual(chunk("b"));
    expect(out[1]?.moreChunks?.chunks).toEqual([chunk("c"), chunk("d"), chunk("e")]);
  });

  it("reads what is behind a stream's first chunk only after the turn that sent it", async () => {
    // The first chunk's write leaves at the end of its turn (Node's HTTP/2 session sends then); the rest of the
    // provider's read, already here, must not be parsed and converted before that.
    const log: string[] = [];
    async function* source(): AsyncGenerator<RouteResponse> {
      log.push("read a");
      yield { chunk: chunk("a") };
      log.push("read b");
      yield { chunk: chunk("b") };
      log.push("read c");
      yield { chunk: chunk("c") };
    }
    const run = async (firstAlone: boolean) => {
      log.length = 0;
      const it = batchChunks(source(), { firstAlone })[Symbol.asyncIterator]();
      expect((await it.next()).value).toEqual({ chunk: chunk("a") });
      setImmediate(() => log.push("first chunk sent"));
      const second = await it.next();
      expect(texts([second.value as RouteResponse])).toEqual(["b", "c"]);
      expect((await it.next()).done).toBe(true);
      return [...log];
    };
    expect(await run(true)).toEqual(["read a", "first chunk sent", "read b", "read c"]);
    // A whole answer (the client reads no stream) is read on at once, within the turn: its end leaves with it.
    expect(await run(false)).toEqual(["read a", "read b", "read c"]);
  });

  it("holds no chunk past the turn it arrived in", async () => {
    async function* source(): AsyncGenerator<RouteResponse> {
      yield { chunk: chunk("a") };
      for (const t of ["b", "c", "d"]) {
        await nextTurn();
        yield { chunk: chunk(t) };
      }
    }
    const { out } = await collect(source());
    expect(texts(out)).toEqual(["a", "b", "c", "d"]);
    expect(out.every((m) => m.moreChunks === undefined)).toBe(true);
  });

  it("sends a message with a route on its own, and what it gathered before an error", async () => {
    async function* source(): AsyncGenerator<RouteResponse> {
      yield { chunk: chunk("a") };
      yield { chunk: chunk("b") };
      yield { chunk: chunk("c") };
      yield { route };
      yield { chunk: chunk("d"), chunkRoute: route };
      yield { chunk: chunk("e") };
      yield { chunk: chunk("f") };
      throw new Error("upstream failed");
    }
    const { out, error } = await collect(source());
    expect(error).toBeInstanceOf(Error);
    expect(texts(out)).toEqual(["a", "b", "c", "d", "e", "f"]);
    expect(out.find((m) => m.route !== undefined)).toEqual({ route });
    expect(out.find((m) => m.chunkRoute !== undefined)?.moreChunks).toBeUndefined();
  });

  it("caps a message at 64 chunks", async () => {
    async function* source(): AsyncGenerator<RouteResponse> {
      for (let i = 0; i < 200; i++) yield { chunk: chunk(String(i)) };
    }
    const { out } = await collect(source());
    expect(texts(out)).toEqual(Array.from({ length: 200 }, (_, i) => String(i)));
    expect(Math.max(...out.map((m) => 1 + (m.moreChunks?.chunks.length ?? 0)))).toBe(65);
  });

  it("stops its source when the caller stops reading, with a read in flight", async () => {
    let stopped = false;
    let failLater: (err: Error) => void = () => undefined;
    async function* source(): AsyncGenerator<RouteResponse> {
      try {
        yield { chunk: chunk("a") };
        yield { chunk: chunk("b") };
        await new Promise((_, reject) => {
          failLater = reject;
        });
      } finally {
        stopped = true;
      }
    }
    const unhandled: unknown[] = [];
    const onUnhandled = (err: unknown) => unhandled.push(err);
    process.on("unhandledRejection", onUnhandled);
    try {
      const it = batchChunks(source());
      expect((await it.next()).value?.chunk).toEqual(chunk("a"));
      expect((await it.next()).value?.chunk).toEqual(chunk("b"));
      await it.return(undefined);
      failLater(new Error("the read fails after the caller went"));
      await nextTurn();
      await nextTurn();
      expect(stopped).toBe(true);
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });
});
