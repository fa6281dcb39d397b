import type { ChatChunk } from "@tokenmesh/proto/common/v1/chat";
import { RouteInfo, type RouteResponse } from "@tokenmesh/proto/router/v1/router";
import { describe, expect, it } from "vitest";
import { withRouteOnFirstChunk } from "./router.handlers.js";

const route = RouteInfo.fromPartial({ model: "m", reason: "model:m" });
const chunk = (content: string) => ({ id: "c", choices: [{ content }] }) as unknown as ChatChunk;

async function collect(events: RouteResponse[], failAtEnd = false) {
  async function* source() {
    yield* events;
    if (failAtEnd) throw new Error("upstream failed");
  }
  const out: RouteResponse[] = [];
  let error: unknown;
  try {
    for await (const ev of withRouteOnFirstChunk(source())) out.push(ev);
  } catch (err) {
    error = err;
  }
  return { out, error };
}

describe("withRouteOnFirstChunk", () => {
  it("puts the route on the first chunk and passes the rest", async () => {
    const { out } = await collect([{ route }, { chunk: chunk("a") }, { chunk: chunk("b") }]);
    expect(out).toEqual([{ chunk: chunk("a"), chunkRoute: route }, { chunk: chunk("b") }]);
  });

  it("sends a route that no chunk follows on its own, before the end or the error", async () => {
    expect((await collect([{ route }])).out).toEqual([{ route }]);
    const failed = await collect([{ route }], true);
    expect(failed.out).toEqual([{ route }]);
    expect(failed.error).toBeInstanceOf(Error);
  });

  it("keeps a second route (another attempt) with the chunk that follows it", async () => {
    const other = RouteInfo.fromPartial({ model: "n" });
    const { out } = await collect([{ route }, { route: other }, { chunk: chunk("a") }]);
    expect(out).toEqual([{ route }, { chunk: chunk("a"), chunkRoute: other }]);
  });
});
