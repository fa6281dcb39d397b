import type { ServerResponse } from "node:http";

/**
 * Writes part of a streamed response so that everything written in this turn of the event loop leaves in one socket
 * write. Node flushes a response's writes at the next tick, but a streamed answer's chunks reach the route one
 * promise or tick apart (the router's messages are decoded as one read delivers them), so each became a system call
 * of its own; holding the socket corked until the turn ends (`setImmediate`) sends them together. Nothing waits for
 * a timer: a lone chunk leaves as soon as the turn's other callbacks have run.
 */
export function writeThisTurn(res: ServerResponse, data: string): void {
  const socket = res.socket;
  if (socket && !socket.writableCorked) {
    socket.cork();
    setImmediate(() => socket.uncork());
  }
  res.write(data);
}
