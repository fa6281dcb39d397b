import { describe, expect, it } from "vitest";
import { ServiceStartError, spawnService, waitFor } from "../src/index.js";

// A tiny HTTP service as a real process: logs a line, answers /ready once listening, exits 0 on SIGTERM.
const serviceSource = `
const http = require("node:http");
const server = http.createServer((req, res) => { res.statusCode = req.url === "/ready" ? 200 : 404; res.end("ok"); });
server.listen(Number(process.env.PORT), "127.0.0.1", () => console.log("listening on " + process.env.PORT + " as " + process.env.NAME));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
`;

describe("spawnService", () => {
  it("waits for readyUrl, collects output, and stops with SIGTERM", async () => {
    const { freePort } = await import("../src/index.js");
    const port = await freePort();
    const service = await spawnService({
      cmd: process.execPath,
      args: ["-e", serviceSource],
      env: { PORT: String(port), NAME: "svc" },
      readyUrl: `http://127.0.0.1:${port}/ready`,
      readyTimeoutMs: 10_000,
    });
    expect(await service.waitForOutput(/listening on \d+ as svc/, 5_000)).toBe(`listening on ${port} as svc`);
    expect(service.output()).toContain("listening on");
    expect(await service.stop()).toEqual({ code: 0, signal: null });
    expect(await service.waitForExit(1_000)).toEqual({ code: 0, signal: null });
  });

  it("SIGKILLs a child that ignores SIGTERM", async () => {
    const service = await spawnService({
      cmd: process.execPath,
      args: [
        "-e",
        `process.on("SIGTERM", () => console.log("ignored")); console.log("up"); setInterval(() => {}, 1000);`,
      ],
      readyPattern: "up",
      stopTimeoutMs: 300,
    });
    expect(await service.stop()).toEqual({ code: null, signal: "SIGKILL" });
    expect(service.output()).toContain("ignored");
  });

  it("rejects with the output when the child exits before it is ready", async () => {
    const attempt = spawnService({
      cmd: process.execPath,
      args: ["-e", `console.error("bad config: FOO"); process.exit(3);`],
      readyPattern: "never printed",
    });
    await expect(attempt).rejects.toBeInstanceOf(ServiceStartError);
    await expect(attempt).rejects.toThrow(/exited with code 3.*\n.*bad config: FOO/s);
  });

  it("rejects when the command does not exist", async () => {
    await expect(spawnService({ cmd: "/nonexistent/binary" })).rejects.toThrow(/could not start \/nonexistent\/binary/);
  });
});

describe("waitFor", () => {
  it("returns the first truthy value and retries through throws", async () => {
    let calls = 0;
    const value = await waitFor(
      () => {
        calls += 1;
        if (calls < 3) throw new Error("not yet");
        return calls;
      },
      { intervalMs: 1 },
    );
    expect(value).toBe(3);
  });

  it("times out with the last error as cause", async () => {
    const attempt = waitFor(
      () => {
        throw new Error("still down");
      },
      { timeoutMs: 50, intervalMs: 10, description: "the thing" },
    );
    await expect(attempt).rejects.toThrow("Timed out after 50 ms waiting for the thing: still down");
  });
});
