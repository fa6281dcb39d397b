import { createServer } from "node:net";

/**
 * Ports handed out by freePort() come from 20000–31999, below Linux's ephemeral range (32768–60999 by default),
 * so no outgoing connection and no `listen(0)` of any process can take one between freePort() and the bind.
 * The range is split in twelve windows of 1000 (see `windowStart`), so parallel test files do not race each other
 * for the same port, and within a process no port is handed out twice. This replaced asking the OS for port 0: on
 * a loaded CI run a service's gRPC port from the ephemeral range was taken by a client socket before the service
 * bound it (EADDRINUSE, one e2e file failed).
 */
const RANGE_START = 20_000;
const WINDOWS = 12;
const WINDOW_SIZE = 1_000;

const handedOut = new Set<number>();
let cursor = -1;

function windowStart(): number {
  const poolId = Number(process.env.VITEST_POOL_ID);
  // Workers take windows 1–11 by pool id; vitest's main process (global setup: NATS, Redis) window 0; any other
  // process (a benchmark) one by its pid.
  const slot = Number.isInteger(poolId) && poolId > 0 ? poolId : process.env.VITEST ? 0 : process.pid;
  return RANGE_START + (slot % WINDOWS) * WINDOW_SIZE;
}

function canBind(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once("error", () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/**
 * A TCP port that is free right now on `host` and on every interface (services bind 0.0.0.0), never handed out
 * before by this process. It is not reserved; callers that start a server on it may still retry on a failed bind.
 */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  const start = windowStart();
  if (cursor < 0) cursor = Math.floor(Math.random() * WINDOW_SIZE);
  for (let tried = 0; tried < WINDOW_SIZE; tried++) {
    cursor = (cursor + 1) % WINDOW_SIZE;
    const port = start + cursor;
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    if ((await canBind(port, host)) && (host === "0.0.0.0" || (await canBind(port, "0.0.0.0")))) return port;
  }
  throw new Error(`No free port left in ${start}–${start + WINDOW_SIZE - 1} for this process`);
}
