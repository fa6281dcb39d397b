// Floor variant "one": the whole gateway in one process (node:http in, undici out), as Portkey is.
//   PORT=… UPSTREAM=http://127.0.0.1:…/v1 node one.mjs
import { createServer } from "node:http";
import { answerer, forward, readBody } from "./upstream.mjs";

createServer((req, res) => {
  readBody(req, (body) => {
    const a = answerer(res);
    forward(body, req.headers.authorization, a.head, a.chunk, a.end);
  });
}).listen(Number(process.env.PORT), "127.0.0.1");
