// Floor variant "h2", front process: node:http in, each request one stream on a long-lived HTTP/2 session to the
// back process (h2-back.mjs): the hop of a unary gRPC call without grpc-js, protobuf or deadlines.
//   PORT=… BACK_PORT=… node h2-front.mjs

import { createServer } from "node:http";
import { connect } from "node:http2";
import { answerer, readBody } from "./upstream.mjs";

const session = connect(`http://127.0.0.1:${process.env.BACK_PORT}`);
session.on("error", (err) => {
  console.error(`h2 session: ${err.message}`);
  process.exit(1);
});

createServer((req, res) => {
  readBody(req, (body) => {
    const a = answerer(res);
    const s = session.request({
      ":method": "POST",
      ":path": "/chat",
      "content-type": "application/json",
      authorization: req.headers.authorization ?? "",
    });
    s.on("response", (h) => a.head(Number(h[":status"]), String(h["content-type"] ?? "application/json")));
    s.on("data", a.chunk);
    s.on("end", a.end);
    s.on("error", () => {
      a.head(502, "application/json");
      a.end();
    });
    s.end(body);
  });
}).listen(Number(process.env.PORT), "127.0.0.1");
