import { createServer, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { writeThisTurn } from "./stream-write.js";

let server: Server | undefined;
afterEach(() => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve())));

/** Serves one streamed response written by `respond` and returns the body and how many socket writes carried it. */
async function serve(respond: (res: ServerResponse) => void): Promise<{ body: string; socketWrites: number }> {
  let socketWrites = 0;
  server = createServer((_req, res) => {
    const socket = res.socket as Socket & { _writev: (...a: unknown[]) => void; _write: (...a: unknown[]) => void };
    for (const name of ["_writev", "_write"] as const) {
      const original = socket[name].bind(socket);
      socket[name] = (...a: unknown[]) => {
        socketWrites++;
        original(...a);
      };
    }
    res.writeHead(200, { "content-type": "text/event-stream" });
    respond(res);
  });
  await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  const body = await (await fetch(`http://127.0.0.1:${port}/`)).text();
  return { body, socketWrites };
}

/** Three events a tick apart, as a stream's chunks arrive from one read, then the end a turn later. */
function threeTicksApart(write: (res: ServerResponse, data: string) => void) {
  return (res: ServerResponse) => {
    write(res, "data: 1\n\n");
    process.nextTick(() => {
      write(res, "data: 2\n\n");
      process.nextTick(() => {
        write(res, "data: 3\n\n");
        setTimeout(() => res.end("data: [DONE]\n\n"), 5);
      });
    });
  };
}

describe("writeThisTurn", () => {
  it("sends the events written in one turn of the event loop in one socket write, in order", async () => {
    const { body, socketWrites } = await serve(threeTicksApart(writeThisTurn));
    expect(body).toBe("data: 1\n\ndata: 2\n\ndata: 3\n\ndata: [DONE]\n\n");
    // The three events (and the head) in one write, the end in another.
    expect(socketWrites).toBe(2);
  });

  it("is what makes the difference: plain writes a tick apart take a socket write each", async () => {
    const { body, socketWrites } = await serve(threeTicksApart((res, data) => res.write(data)));
    expect(body).toBe("data: 1\n\ndata: 2\n\ndata: 3\n\ndata: [DONE]\n\n");
    expect(socketWrites).toBeGreaterThanOrEqual(3);
  });
});
