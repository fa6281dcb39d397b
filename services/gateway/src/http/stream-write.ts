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
 * Writes the first event of a streamed response, with its status line and headers, and sends it at once, in one
 * socket write. The rest of the answer is often here already (a cached answer, a fast model, or the provider's chunks
 * that one read brought), and converting it and recording the request's usage take the rest of the turn: a client's
 * first byte should not wait for that. Corked around it, the head, the chunk's size line and the event leave
 * together (uncorked, a chunked response's write is four socket writes).
 */
export function writeNow(res: ServerResponse, data: string): boolean {
  const socket = res.socket;
  if (!socket || socket.writableCorked) return res.write(data);
  socket.cork();
  const ok = res.write(data);
  socket.uncork();
  return ok;
}

/**
 * A streamed response's writer: its first event leaves at once (`writeNow`), the later ones written in one turn of
 * the event loop leave together (`writeThisTurn`). False when the client's buffer is full (then `whenWritable`).
 */
export function streamWriter(res: ServerResponse): (data: string) => boolean {
  let started = false;
  return (data) => {
    if (started) return writeThisTurn(res, data);
    started = true;
    return writeNow(res, data);
  };
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
