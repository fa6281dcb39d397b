import { connect } from "node:net";

/** What came back for one raw request: a parsed HTTP response, or the connection ending without one. */
export type RawOutcome =
  | { kind: "response"; status: number; headers: Record<string, string>; body: Buffer }
  /** The server closed (or reset) the connection before a whole status line arrived. */
  | { kind: "closed"; error?: string }
  /** Nothing within the time limit: the server hangs on this input. */
  | { kind: "timeout" };

const HEAD_END = Buffer.from("\r\n\r\n");

function dechunk(body: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = body.indexOf("\r\n", at);
    if (eol < 0) break;
    const size = Number.parseInt(body.subarray(at, eol).toString("latin1"), 16);
    if (!Number.isFinite(size) || size === 0) break;
    parts.push(body.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
  return Buffer.concat(parts);
}

function parse(data: Buffer): RawOutcome | undefined {
  const end = data.indexOf(HEAD_END);
  if (end < 0) return undefined;
  const lines = data.subarray(0, end).toString("latin1").split("\r\n");
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? "");
  if (!m) return undefined;
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const raw = data.subarray(end + HEAD_END.length);
  const body = headers["transfer-encoding"]?.toLowerCase() === "chunked" ? dechunk(raw) : raw;
  return { kind: "response", status: Number(m[1]), headers, body };
}

/**
 * Sends `request` (the exact bytes of an HTTP/1.1 request, which should ask for `Connection: close`) on a fresh
 * TCP connection and reads until the server closes it. Bytes are written as given: no header validation, no
 * encoding, so invalid methods, paths, header bytes and bodies reach the server's parser as they are.
 *
 * A response whose status line and headers arrived counts even if the connection is reset afterwards (the server
 * may answer and close before reading all of a large request).
 */
export function rawRequest(url: string, request: Buffer, timeoutMs: number): Promise<RawOutcome> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const socket = connect({ host: hostname, port: Number(port) });
    let settled = false;
    const finish = (error?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(parse(Buffer.concat(chunks)) ?? { kind: "closed", ...(error ? { error } : {}) });
    };
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      socket.destroy();
      resolve({ kind: "timeout" });
    }, timeoutMs);
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("end", () => finish());
    socket.on("close", () => finish());
    socket.on("error", (err: NodeJS.ErrnoException) => finish(err.code ?? err.message));
    socket.write(request);
  });
}
