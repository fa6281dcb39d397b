// Floor variant "h2", back process: an HTTP/2 server whose every stream is one chat request to the upstream.
//   PORT=… UPSTREAM=http://127.0.0.1:…/v1 node h2-back.mjs
import { createServer } from "node:http2";
import { forward, readBody } from "./upstream.mjs";

createServer()
  .on("stream", (stream, headers) => {
    readBody(stream, (body) =>
      forward(
        body,
        headers.authorization,
        (status, type) => stream.respond({ ":status": status, "content-type": type }),
        (c) => stream.write(c),
        () => stream.end(),
      ),
    );
  })
  .listen(Number(process.env.PORT), "127.0.0.1");
