import { randomFillSync } from "node:crypto";

const ID_BYTES = 12;
/** Random bytes drawn from the OS for this many ids at once (one system call instead of one per request). */
const POOL_IDS = 256;
const pool = Buffer.alloc(ID_BYTES * POOL_IDS);
let next = POOL_IDS;

/**
 * A new request id: `req_` and 96 random bits in hex (from the OS's CSPRNG, drawn for 256 ids at a time; each byte
 * is used once). The gateway mints one for every request, whatever the client sends; it keys the rate-limit slot,
 * the hard-budget hold, the usage event's `Nats-Msg-Id` and the ledger entry.
 */
export function mintRequestId(): string {
  if (next === POOL_IDS) {
    randomFillSync(pool);
    next = 0;
  }
  const at = next++ * ID_BYTES;
  return `req_${pool.toString("hex", at, at + ID_BYTES)}`;
}

const CORRELATION_ID = /^[\x21-\x7e]{1,128}$/;

/**
 * A client's own id for a request (`x-client-request-id`, or `x-request-id` as many clients send it), kept only for
 * correlation: logged, put on the span and echoed back in `x-client-request-id`. Anything but 1–128 printable ASCII
 * characters (no spaces, no control characters) is dropped, never trusted as a key.
 */
export function correlationId(value: unknown): string | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  return typeof v === "string" && CORRELATION_ID.test(v) ? v : undefined;
}
