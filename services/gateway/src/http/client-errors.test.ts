import { connect } from "node:net";
import Fastify, { type FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { answerClientError, answerFrameworkError, refuseExpectation } from "./client-errors.js";

// The gateway's Fastify options for requests that never reach a route (app.ts), on a server of their own.
let app: FastifyInstance;
let port = 0;

beforeAll(async () => {
  app = Fastify({ clientErrorHandler: answerClientError, frameworkErrors: answerFrameworkError });
  app.server.on("checkExpectation", refuseExpectation);
  app.get("/v1/models/:id", async () => ({ ok: true }));
  await app.listen({ host: "127.0.0.1", port: 0 });
  port = (app.server.address() as { port: number }).port;
});

afterAll(() => app.close());

/**
 * Sends raw bytes in one write and reads only once the kernel has taken all of them, as a client busy uploading
 * does: an answer the server gives early must wait in the socket for it, so a server that cuts a refused connection
 * while the client is still sending fails the write (EPIPE or a reset) instead of answering. Resolves with the status
 * and the parsed JSON body once the server closes.
 */
function raw(request: string | Buffer): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect({ host: "127.0.0.1", port });
    socket.pause();
    socket.on("data", (c: Buffer) => chunks.push(c));
    let failed = false;
    socket.on("error", (err) => {
      failed = true;
      reject(err);
    });
    socket.on("close", () => {
      if (failed) return;
      const text = Buffer.concat(chunks).toString();
      const [h = "", b = ""] = text.split("\r\n\r\n");
      resolve({ status: Number(h.split(" ")[1]), body: JSON.parse(b) });
    });
    socket.write(request, () => socket.resume());
  });
}

const openAIError = (code: string) => ({
  error: expect.objectContaining({ message: expect.any(String), type: "invalid_request_error", code, param: null }),
});

describe("requests refused before any route", () => {
  it("answers headers over Node's limit 431 in OpenAI's error format", async () => {
    const res = await raw(`GET /v1/models/a HTTP/1.1\r\nHost: x\r\nx-big: ${"a".repeat(20_000)}\r\n\r\n`);
    expect(res).toEqual({ status: 431, body: openAIError("request_headers_too_large") });
  });

  it("lets a client refused by the parser finish sending a large body and read its 400", async () => {
    // 8 MiB: more than the loopback socket buffers hold, so the upload is still going when the 400 is written.
    const body = Buffer.alloc(8 * 1024 * 1024, "a");
    const head = `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n[: \r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
    const res = await raw(Buffer.concat([Buffer.from(head), body]));
    expect(res.status).toBe(400);
    expect(res.body).toEqual(openAIError("invalid_http_request"));
  });

  it("answers a request Node cannot parse 400 in OpenAI's error format", async () => {
    const res = await raw("GET /v1/models/a HTTP/1.1\r\nHost: x\r\nbad\u0000header: 1\r\n\r\n");
    expect(res).toEqual({ status: 400, body: openAIError("invalid_http_request") });
  });

  it("answers malformed percent-encoding and an over-long path parameter 400 in OpenAI's error format", async () => {
    const bad = await raw("GET /v1/models/%zz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    expect(bad).toEqual({ status: 400, body: openAIError("invalid_url") });
    const long = await raw(`GET /v1/models/${"k".repeat(500)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    expect(long).toEqual({ status: 400, body: openAIError("invalid_url") });
  });

  it("answers an Expect other than 100-continue 417 in OpenAI's error format", async () => {
    const res = await raw("GET /v1/models/a HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\n\r\n");
    expect(res).toEqual({ status: 417, body: openAIError("expectation_failed") });
  });
});
