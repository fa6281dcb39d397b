import type { ServerResponse } from "node:http";

/**
 * Writes part of a streamed response so that everything written in this turn of the event loop leaves in one socket
 * write. Node flushes a response's writes at the next tick, but a streamed answer's chunks reach the route one
 * promise or tick apart (the router's messages are decoded as one read delivers them), so each became a system call
 * of its own; holding the socket corked until the turn ends (`setImmediate`) sends them together. Nothing waits for
 * a timer: a lone chunk leaves as soon as the turn's other callbacks have run.
 */
export function writeThisTurn(res: ServerResponse, data: string): boolean {
  const socket = res.socket;
  if (socket && !socket.writableCorked) {
    socket.cork();
    setImmediate(() => socket.uncork());
  }
  return res.write(data);
}

/**
 * Resolves once the response can take more (`drain`) or is gone (`close`): a route that waits for it after a write
 * returned false reads the next chunk only when the client has read the last ones, so a slow or stalled client holds
 * back the router's stream (gRPC flow control) and the provider's, instead of growing this process's buffers.
 */
export function whenWritable(res: ServerResponse): Promise<void> {
  if (res.destroyed || res.writableEnded || !res.writableNeedDrain) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}
