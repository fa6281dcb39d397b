import { randomBytes } from "node:crypto";

let counter = 0;

/**
 * Returns `<prefix>_<suffix>`, a name no other call in any process is likely to return, for per-test NATS
 * streams, consumers, subjects tokens and Redis keys, so tests sharing one server never see each other's data.
 *
 * The suffix uses only `[a-z0-9]`, so the result is a valid stream/consumer name and subject token whenever
 * `prefix` is (no `.`, `*`, `>` or whitespace).
 */
export function uniqueName(prefix: string): string {
  counter += 1;
  return `${prefix}_${process.pid.toString(36)}${counter.toString(36)}${randomBytes(4).toString("hex")}`;
}
