import { createHmac, timingSafeEqual } from "node:crypto";
import { isIP } from "node:net";

/**
 * Signed job callbacks. The body is the job exactly as `GET /v1/jobs/{id}` returns it; the header
 *
 * ```
 * x-tokenmesh-signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" with the key's callback secret>
 * ```
 *
 * lets the receiver check that the gateway sent it (the secret is the key's, from `GET /v1/jobs/callback-secret`)
 * and that it is fresh (reject a `t` older than a few minutes: a replay).
 */
export const SIGNATURE_HEADER = "x-tokenmesh-signature";

/** The signature header's value for `body` sent at unix time `t` (seconds). */
export function signCallback(secret: string, body: string, t: number): string {
  return `t=${t},v1=${createHmac("sha256", secret).update(`${t}.${body}`).digest("hex")}`;
}

/**
 * Checks a callback as a receiver should: a `v1` signature over `<t>.<body>` with `secret`, compared in constant
 * time, and `t` within `toleranceS` of `nowS`. Several `v1=` entries (during a secret rotation) are accepted if
 * any matches.
 */
export function verifyCallbackSignature(
  secret: string,
  header: string | undefined,
  body: string,
  nowS: number,
  toleranceS = 300,
): boolean {
  if (!header) return false;
  let t: number | undefined;
  const sigs: string[] = [];
  for (const part of header.split(",")) {
    const [k, v] = part.trim().split("=", 2);
    if (k === "t" && v && /^\d+$/.test(v)) t = Number(v);
    else if (k === "v1" && v && /^[0-9a-f]{64}$/.test(v)) sigs.push(v);
  }
  if (t === undefined || sigs.length === 0 || Math.abs(nowS - t) > toleranceS) return false;
  const expected = Buffer.from(createHmac("sha256", secret).update(`${t}.${body}`).digest("hex"), "hex");
  return sigs.some((s) => timingSafeEqual(Buffer.from(s, "hex"), expected));
}

/** Host names of cloud metadata services, refused whatever the allow-list says. */
const METADATA_HOSTS = new Set(["metadata.google.internal", "metadata.goog", "metadata", "instance-data"]);

/**
 * Whether an IP address must never receive a callback: link-local ranges (169.254.0.0/16, fe80::/10, where
 * cloud metadata services answer), the metadata addresses outside them (100.100.100.200, fd00:ec2::254), and the
 * unspecified address. Loopback and private ranges are not refused here: restrict them with the allow-list.
 */
export function isBlockedAddress(ip: string): boolean {
  let a = ip.toLowerCase();
  if (a.startsWith("[") && a.endsWith("]")) a = a.slice(1, -1);
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (mapped) a = mapped[1]!;
  if (isIP(a) === 4) {
    return a.startsWith("169.254.") || a === "100.100.100.200" || a === "0.0.0.0";
  }
  if (isIP(a) === 6) {
    return /^fe[89ab][0-9a-f]?:/.test(a) || a === "fd00:ec2::254" || a === "::";
  }
  return false;
}

/**
 * The allow-list of callback hosts (`GATEWAY_CALLBACK_ALLOW`): comma-separated patterns, each `*` (any host), `*.`
 * and a domain (its subdomains), or an exact host name or IP address. Case-insensitive.
 */
export function parseAllowList(spec: string): string[] {
  return spec
    .split(",")
    .map((p) => p.trim().toLowerCase())
    .filter((p) => p.length > 0);
}

function hostMatches(host: string, pattern: string): boolean {
  if (pattern === "*") return true;
  if (pattern.startsWith("*.")) return host.endsWith(pattern.slice(1)) && host.length > pattern.length - 1;
  return host === pattern;
}

/**
 * Why `url` may not receive callbacks, or undefined when it may: only http and https, no credentials in the URL, a
 * host the allow-list matches, and never a metadata host or a blocked address literal. A host name's addresses are
 * checked again when the callback is sent (a name may resolve to a blocked address).
 */
export function callbackUrlProblem(url: string, allow: string[]): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return "is not a valid URL";
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") return "must use http or https";
  if (u.username || u.password) return "must not carry credentials";
  const host = u.hostname.toLowerCase().replace(/^\[|\]$/g, "");
  if (METADATA_HOSTS.has(host) || isBlockedAddress(host)) return "points at a link-local or metadata address";
  if (!allow.some((p) => hostMatches(host, p))) return "is not on the gateway's callback allow-list";
  return undefined;
}
