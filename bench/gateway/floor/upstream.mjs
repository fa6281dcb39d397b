// What every floor variant does with a request once it holds it: read the JSON body, send it to the upstream
// (undici, kept-alive pool), and answer with the upstream's answer: a completion is read whole and parsed (a gateway
// reads its usage), a stream is passed through chunk by chunk. No auth, limits, guard, usage event or trace: the
// least a gateway that forwards and reads usage does.
import { Pool } from "undici";

const upstream = new URL(process.env.UPSTREAM ?? "http://127.0.0.1:8080/v1");
const pool = new Pool(upstream.origin, { connections: 256 });
const path = `${upstream.pathname.replace(/\/$/, "")}/chat/completions`;

/**
 * Forwards one chat request. `head(status, contentType)` is called once, then `chunk(bytes)` for each piece of the
 * answer (one piece for a completion), then `end()`.
 */
export async function forward(bodyText, authorization, head, chunk, end) {
  let request;
  try {
    request = JSON.parse(bodyText);
  } catch {
    head(400, "application/json");
    chunk(Buffer.from('{"error":{"message":"invalid JSON","type":"invalid_request_error"}}'));
    return end();
  }
  try {
    const up = await pool.request({
      path,
      method: "POST",
      headers: { "content-type": "application/json", authorization: authorization ?? "" },
      body: JSON.stringify(request),
    });
    const type = String(up.headers["content-type"] ?? "application/json");
    head(up.statusCode, type);
    if (request.stream === true) {
      for await (const c of up.body) chunk(c);
    } else {
      const text = await up.body.text();
      JSON.parse(text).usage; // a gateway reads the usage
      chunk(Buffer.from(text));
    }
    end();
  } catch (err) {
    head(502, "application/json");
    chunk(Buffer.from(JSON.stringify({ error: { message: String(err), type: "upstream_error" } })));
    end();
  }
}

/** Reads a node:http request's (or HTTP/2 stream's) body as text. */
export function readBody(stream, done) {
  const parts = [];
  stream.on("data", (c) => parts.push(c));
  stream.on("end", () => done(Buffer.concat(parts).toString("utf8")));
}

/**
 * The client-facing side of an answer on a node:http response: a stream's head goes out at once and each chunk as
 * it comes; a completion is sent whole, with its length, in one write.
 */
export function answerer(res) {
  let status = 200;
  let type = "application/json";
  const parts = [];
  return {
    head(s, t) {
      status = s;
      type = t;
      if (t.startsWith("text/event-stream")) res.writeHead(s, { "content-type": t });
    },
    chunk(c) {
      if (res.headersSent) res.write(c);
      else parts.push(c);
    },
    end() {
      if (res.headersSent) return res.end();
      const data = Buffer.concat(parts);
      res.writeHead(status, { "content-type": type, "content-length": data.length });
      res.end(data);
    },
  };
}
