import { randomBytes } from "node:crypto";

/**
 * A new request id: `req_` and 96 random bits in hex. The gateway mints one for every request, whatever the client
 * sends; it keys the rate-limit slot, the hard-budget hold, the usage event's `Nats-Msg-Id` and the ledger entry.
 */
export function mintRequestId(): string {
  return `req_${randomBytes(12).toString("hex")}`;
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
