// Length-prefixed frames over one TCP connection, for the floor variant "tcp": [u32 payload length][u32 call id]
// [u8 kind][payload]. The cheapest hop between two processes that still multiplexes calls: no HTTP/2, no headers.
export const KIND = { request: 1, head: 2, data: 3, end: 4 };

/** Writes frames, those of one turn of the event loop in one socket write. */
export function frameWriter(socket) {
  let corked = false;
  return (id, kind, payload = Buffer.alloc(0)) => {
    if (!corked) {
      corked = true;
      socket.cork();
      process.nextTick(() => {
        corked = false;
        socket.uncork();
      });
    }
    const head = Buffer.allocUnsafe(9);
    head.writeUInt32BE(payload.length, 0);
    head.writeUInt32BE(id, 4);
    head.writeUInt8(kind, 8);
    socket.write(head);
    if (payload.length > 0) socket.write(payload);
  };
}

/** Calls `onFrame(id, kind, payload)` for each whole frame read from `socket`. */
export function readFrames(socket, onFrame) {
  let pending = Buffer.alloc(0);
  socket.on("data", (chunk) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    let at = 0;
    while (pending.length - at >= 9) {
      const length = pending.readUInt32BE(at);
      if (pending.length - at < 9 + length) break;
      onFrame(pending.readUInt32BE(at + 4), pending.readUInt8(at + 8), pending.subarray(at + 9, at + 9 + length));
      at += 9 + length;
    }
    pending = pending.subarray(at);
  });
}
