import { createServer, type Server, type ServerResponse } from "node:http";
import { connect, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { streamWriter, whenWritable, writeThisTurn } from "./stream-write.js";

let server: Server | undefined;
afterEach(() => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve())));

/**
 * Serves one streamed response written by `respond` and returns the body, how many socket writes carried it and
 * what each carried.
 */
async function serve(
  respond: (res: ServerResponse) => void,
): Promise<{ body: string; socketWrites: number; carried: string[] }> {
  let socketWrites = 0;
  const carried: string[] = [];
  server = createServer((_req, res) => {
    const socket = res.socket as Socket & { _writev: (...a: unknown[]) => void; _write: (...a: unknown[]) => void };
    for (const name of ["_writev", "_write"] as const) {
      const original = socket[name].bind(socket);
      socket[name] = (...a: unknown[]) => {
        socketWrites++;
        const parts = name === "_writev" ? (a[0] as { chunk: unknown }[]).map((p) => p.chunk) : [a[0]];
        carried.push(parts.map((p) => String(p)).join(""));
        original(...a);
      };
    }
    res.writeHead(200, { "content-type": "text/event-stream" });
    respond(res);
  });
  await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  const body = await (await fetch(`http://127.0.0.1:${port}/`)).text();
  return { body, socketWrites, carried };
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

describe("streamWriter", () => {
  it("sends the first event (with the head) at once and the later ones of a turn together", async () => {
    const { body, carried } = await serve((res) => {
      const write = streamWriter(res);
      threeTicksApart((_res, data) => write(data))(res);
    });
    expect(body).toBe("data: 1\n\ndata: 2\n\ndata: 3\n\ndata: [DONE]\n\n");
    // The head and the first event leave before the events written after it in the same turn.
    expect(carried).toHaveLength(3);
    expect(carried[0]).toMatch(/^HTTP\/1\.1 200 OK[\s\S]*\r\n\r\n[0-9a-f]+\r\ndata: 1\n\n\r\n$/);
    expect(carried[1]).toContain("data: 2");
    expect(carried[1]).toContain("data: 3");
    expect(carried[2]).toContain("[DONE]");
  });
});

describe("whenWritable", () => {
  /**
   * Streams `total` events of 1 KiB from an async source the way the SSE routes do, to a client that reads nothing at
   * first; returns how many events the route had pulled while the client was stalled, and what it then received.
   */
  async function stalledClient(wait: boolean, total: number) {
    let pulled = 0;
    async function* source() {
      for (let i = 0; i < total; i++) {
        pulled++;
        yield `data: ${String(i).padStart(8, "0")}${"x".repeat(1000)}\n\n`;
      }
    }
    let routeDone: Promise<void> = Promise.resolve();
    server = createServer((_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      routeDone = (async () => {
        for await (const data of source()) if (!writeThisTurn(res, data) && wait) await whenWritable(res);
        res.end("data: [DONE]\n\n");
      })();
    });
    await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as { port: number };
    const socket = connect(port, "127.0.0.1");
    socket.pause();
    socket.write("GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    // The route runs until the socket's buffers are full (or, without waiting, to its end).
    let last = -1;
    while (pulled !== last) {
      last = pulled;
      await new Promise((r) => setTimeout(r, 200));
    }
    const pulledWhileStalled = pulled;
    const chunks: Buffer[] = [];
    socket.on("data", (c: Buffer) => chunks.push(c));
    const ended = new Promise((r) => socket.on("end", r));
    socket.resume();
    await ended;
    await routeDone;
    const body = Buffer.concat(chunks).toString();
    return { pulledWhileStalled, events: body.split("data: ").length - 2, done: body.includes("data: [DONE]\n\n") };
  }

  const total = 40_000; // ~40 MB: more than loopback socket buffers hold

  it("holds the source back while the client does not read, and then delivers everything", async () => {
    const r = await stalledClient(true, total);
    expect(r.pulledWhileStalled).toBeLessThan(total / 2);
    expect(r.events).toBe(total);
    expect(r.done).toBe(true);
  });

  it("is what makes the difference: without it the whole answer is buffered in the process", async () => {
    const r = await stalledClient(false, total);
    expect(r.pulledWhileStalled).toBe(total);
    expect(r.events).toBe(total);
  });
});
