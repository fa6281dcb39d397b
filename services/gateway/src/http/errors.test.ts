import { connect } from "node:net";
import { createLogger } from "@tokenmesh/telemetry";
import Fastify, { type FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { registerErrorHandler } from "./errors.js";

// The gateway's error handling on a server of its own, with one JSON route.
let app: FastifyInstance;
let port = 0;

beforeAll(async () => {
  app = Fastify({ bodyLimit: 64 * 1024 * 1024 });
  registerErrorHandler(app, createLogger({ service: "errors-test", level: "silent" }));
  app.post("/v1/chat/completions", async () => ({ ok: true }));
  await app.listen({ host: "127.0.0.1", port: 0 });
  port = (app.server.address() as { port: number }).port;
});

afterAll(() => app.close());

/**
 * Sends a request with a 16 MiB body in one write (more than the socket buffers hold, so the server must read it
 * for the write to finish) and reads until the server closes: the status, or the socket error the client saw.
 */
function send(head: string): Promise<{ status: number; error?: string }> {
  const body = Buffer.alloc(16 * 1024 * 1024, "a");
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let error: string | undefined;
    const socket = connect({ host: "127.0.0.1", port });
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("error", (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
    socket.on("close", () => {
      const status = Number(Buffer.concat(chunks).toString().split(" ")[1]);
      resolve(error === undefined ? { status } : { status, error });
    });
    socket.write(`${head}\r\nHost: x\r\nConnection: close\r\nContent-Length: ${body.length}\r\n\r\n`);
    socket.write(body);
  });
}

describe("error answers to a request whose body is still arriving", () => {
  // Answering before the body is read makes the client see a broken pipe instead of the answer (found by the fuzz
  // suite with a 600 KB multipart body).
  it("reads the body first, so the client gets its 4xx for a wrong content type", async () => {
    const res = await send("POST /v1/chat/completions HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=x");
    expect(res).toEqual({ status: 400 });
  });

  it("reads the body first for an unknown path too", async () => {
    const res = await send("POST /v1/nothing-here HTTP/1.1\r\nContent-Type: application/octet-stream");
    expect(res).toEqual({ status: 404 });
  });
});
