// Floor variant "tcp", back process: takes framed calls (frames.mjs) and forwards each to the upstream.
//   PORT=… UPSTREAM=http://127.0.0.1:…/v1 node tcp-back.mjs
import { createServer } from "node:net";
import { frameWriter, KIND, readFrames } from "./frames.mjs";
import { forward } from "./upstream.mjs";

createServer((socket) => {
  socket.setNoDelay(true);
  const send = frameWriter(socket);
  readFrames(socket, (id, kind, payload) => {
    if (kind !== KIND.request) return;
    const { authorization, body } = JSON.parse(payload.toString());
    forward(
      body,
      authorization,
      (status, type) => send(id, KIND.head, Buffer.from(JSON.stringify({ status, type }))),
      (c) => send(id, KIND.data, c),
      () => send(id, KIND.end),
    );
  });
  socket.on("error", () => socket.destroy());
}).listen(Number(process.env.PORT), "127.0.0.1");
