// Floor variant "tcp", front process: node:http in, every request a call on one long-lived TCP connection to the
// back process (tcp-back.mjs), framed by frames.mjs.
//   PORT=… BACK_PORT=… node tcp-front.mjs
import { createServer } from "node:http";
import { connect } from "node:net";
import { frameWriter, KIND, readFrames } from "./frames.mjs";
import { answerer, readBody } from "./upstream.mjs";

const socket = connect(Number(process.env.BACK_PORT), "127.0.0.1");
socket.setNoDelay(true);
socket.on("error", (err) => {
  console.error(`back connection: ${err.message}`);
  process.exit(1);
});
const send = frameWriter(socket);
const calls = new Map();
let next = 0;
readFrames(socket, (id, kind, payload) => {
  const a = calls.get(id);
  if (!a) return;
  if (kind === KIND.head) {
    const { status, type } = JSON.parse(payload.toString());
    a.head(status, type);
  } else if (kind === KIND.data) a.chunk(Buffer.from(payload));
  else if (kind === KIND.end) {
    calls.delete(id);
    a.end();
  }
});

createServer((req, res) => {
  readBody(req, (body) => {
    next = (next + 1) >>> 0;
    const id = next;
    calls.set(id, answerer(res));
    send(id, KIND.request, Buffer.from(JSON.stringify({ authorization: req.headers.authorization ?? "", body })));
  });
}).listen(Number(process.env.PORT), "127.0.0.1");
