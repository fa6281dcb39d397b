import { createServer } from "node:net";

/**
 * Asks the OS for a TCP port that is free on `host` right now, by binding port 0 and closing the listener.
 *
 * The port is not reserved: another process may take it before the caller binds it, so callers that start a
 * server on it should retry with a fresh port when the bind fails (as `startNatsServer` / `startRedisServer` do).
 */
export function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen({ port: 0, host, exclusive: true }, () => {
      const address = server.address();
      if (address === null || typeof address === "string") {
        server.close();
        reject(new Error(`Could not read the port bound on ${host}`));
        return;
      }
      server.close(() => resolve(address.port));
    });
  });
}
