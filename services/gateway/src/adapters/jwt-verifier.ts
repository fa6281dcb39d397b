import { createPublicKey } from "node:crypto";
import { AppError } from "@tokenmesh/runtime";
import type { Logger } from "@tokenmesh/telemetry";
import {
  createLocalJWKSet,
  decodeProtectedHeader,
  errors,
  type JSONWebKeySet,
  type JWK,
  type JWSHeaderParameters,
  jwtVerify,
} from "jose";
import { InvalidTokenError, JWT_ALGORITHMS, type JwtAuth } from "../domain/jwt-auth.js";
import type { JwtVerifier, VerifiedJwt } from "../domain/ports.js";
import { metrics } from "../metrics.js";

type KeyGetter = ReturnType<typeof createLocalJWKSet>;
type FlattenedToken = Parameters<KeyGetter>[1];

/** A JWKS larger than this is refused (an IdP publishes a handful of keys). */
const MAX_JWKS_BYTES = 1024 * 1024;

export interface JwksCacheOptions {
  timeoutMs: number;
  /** After a token with an unknown `kid`, at most one fetch per this many ms. */
  refetchIntervalMs: number;
  /** A JWKS older than this is refreshed in the background. */
  maxAgeMs: number;
  /** Cached keys are refused once the last successful fetch is older than this. */
  maxStaleMs: number;
  logger: Logger;
  now?: () => number;
  fetch?: typeof fetch;
}

/**
 * One IdP's JWKS, fetched over HTTP and cached. Concurrent misses share one fetch. A token whose `kid` is not in
 * the cached set triggers a refetch at most once per `refetchIntervalMs` (a flood of made-up kids costs the IdP
 * one request per interval, not one per token); the set is refreshed in the background after `maxAgeMs`, and when
 * the IdP cannot be reached the cached keys keep working until `maxStaleMs` after the last successful fetch.
 */
export class JwksCache {
  private keys: KeyGetter | undefined;
  private fetchedAt = Number.NEGATIVE_INFINITY;
  private lastAttempt = Number.NEGATIVE_INFINITY;
  private lastKidRefetch = Number.NEGATIVE_INFINITY;
  private inflight: Promise<void> | undefined;
  private readonly now: () => number;

  constructor(
    readonly url: string,
    private readonly options: JwksCacheOptions,
  ) {
    this.now = options.now ?? Date.now;
  }

  /** Takes new timing options (a catalog reload) without dropping the cached keys. */
  configure(options: Omit<JwksCacheOptions, "logger" | "now" | "fetch">): void {
    Object.assign(this.options, options);
  }

  /** The key for a token's protected header (jose's key-getter contract). */
  async key(header: JWSHeaderParameters, token: FlattenedToken) {
    const now = this.now();
    if (!this.keys) {
      // Nothing cached: fetch, but not more often than the refetch interval while the IdP is failing.
      if (now - this.lastAttempt < this.options.refetchIntervalMs && !this.inflight) {
        throw unavailable(this.url);
      }
      await this.refresh().catch(() => undefined);
      if (!this.keys) throw unavailable(this.url);
    } else if (
      now - this.fetchedAt > this.options.maxAgeMs &&
      now - this.lastAttempt >= this.options.refetchIntervalMs
    ) {
      void this.refresh().catch(() => undefined);
    }
    if (this.now() - this.fetchedAt > this.options.maxStaleMs) throw unavailable(this.url);
    try {
      return await this.keys!(header, token);
    } catch (err) {
      if (!(err instanceof errors.JWKSNoMatchingKey)) throw err;
      if (this.inflight) {
        await this.inflight.catch(() => undefined);
      } else if (this.now() - this.lastKidRefetch >= this.options.refetchIntervalMs) {
        this.lastKidRefetch = this.now();
        await this.refresh().catch(() => undefined);
      } else {
        throw err;
      }
      return this.keys!(header, token);
    }
  }

  /** Fetches the JWKS now (shared by concurrent callers); on failure the previous keys stay. */
  refresh(): Promise<void> {
    this.inflight ??= this.fetchKeys().finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  private async fetchKeys(): Promise<void> {
    this.lastAttempt = this.now();
    try {
      const res = await (this.options.fetch ?? fetch)(this.url, {
        headers: { accept: "application/jwk-set+json, application/json" },
        redirect: "error",
        signal: AbortSignal.timeout(this.options.timeoutMs),
      });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const text = await res.text();
      if (text.length > MAX_JWKS_BYTES) throw new Error("JWKS too large");
      const body = JSON.parse(text) as JSONWebKeySet;
      if (!body || !Array.isArray(body.keys)) throw new Error("not a JWK set");
      // Only asymmetric public signing keys: a JWKS that also lists a secret or private key must not widen what
      // a token may be checked against.
      const keys = body.keys.filter(
        (k) => k && typeof k === "object" && k.kty !== "oct" && k.d === undefined && (k.use ?? "sig") === "sig",
      );
      this.keys = createLocalJWKSet({ keys });
      this.fetchedAt = this.now();
      metrics.jwksFetches.inc({ outcome: "ok" });
      this.options.logger.info({ url: this.url, keys: keys.length }, "JWKS fetched");
    } catch (err) {
      metrics.jwksFetches.inc({ outcome: "error" });
      this.options.logger.warn(
        { url: this.url, err: (err as Error).message, cached: this.keys !== undefined },
        "JWKS fetch failed",
      );
      throw err;
    }
  }
}

function unavailable(url: string): AppError {
  return new AppError("UNAVAILABLE", "The identity provider's signing keys cannot be fetched; try again later", {
    reason: "jwks_unavailable",
    origin: "upstream",
    cause: url,
  });
}

/** `public_keys` of the catalog as a local JWK set (PEMs converted with node:crypto). */
function staticKeySet(keys: NonNullable<JwtAuth["public_keys"]>): KeyGetter {
  const jwks: JWK[] = keys.map((k) => {
    const jwk = k.pem ? (createPublicKey(k.pem).export({ format: "jwk" }) as JWK) : (k.jwk as JWK);
    return k.kid ? { ...jwk, kid: k.kid } : jwk;
  });
  return createLocalJWKSet({ keys: jwks });
}

/** What a jose failure means to the caller, without echoing the token. */
function invalid(err: unknown): Error {
  if (err instanceof AppError) return err;
  if (err instanceof errors.JWTExpired) return new InvalidTokenError("the token has expired", { cause: err });
  if (err instanceof errors.JWTClaimValidationFailed) {
    const what: Record<string, string> = {
      nbf: "the token is not valid yet",
      iss: "unexpected issuer",
      aud: "unexpected audience",
      iat: "the token is too old or was issued in the future",
    };
    return new InvalidTokenError(what[err.claim] ?? `claim '${err.claim}' ${err.reason}`, { cause: err });
  }
  if (err instanceof errors.JWKSNoMatchingKey) {
    return new InvalidTokenError("no signing key matches the token's 'kid'", { cause: err });
  }
  if (err instanceof errors.JOSEAlgNotAllowed || err instanceof errors.JOSENotSupported) {
    return new InvalidTokenError("the token's algorithm is not accepted", { cause: err });
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) {
    return new InvalidTokenError("signature verification failed", { cause: err });
  }
  return new InvalidTokenError("the token could not be verified", { cause: err });
}

/**
 * JwtVerifier over jose: the catalog's `auth.jwt` is read on every call (so a reload applies to the next token),
 * JWKS caches are kept per URL across reloads. Tokens must be signed with an asymmetric algorithm from the
 * configured list (never `none`, never HS*), carry `exp` and `sub`, and match `iss` and `aud`.
 */
export class JoseJwtVerifier implements JwtVerifier {
  private readonly jwks = new Map<string, JwksCache>();
  private statics: { source: JwtAuth["public_keys"]; keys: KeyGetter } | undefined;

  constructor(
    private readonly options: {
      config: () => JwtAuth | undefined;
      logger: Logger;
      now?: () => number;
      fetch?: typeof fetch;
    },
  ) {}

  enabled(): boolean {
    return this.options.config() !== undefined;
  }

  async verify(token: string): Promise<VerifiedJwt> {
    const config = this.options.config();
    if (!config) throw new InvalidTokenError("JWT sign-in is not configured");
    const algorithms: string[] = config.algorithms ?? [...JWT_ALGORITHMS];
    let alg: string | undefined;
    try {
      alg = decodeProtectedHeader(token).alg;
    } catch (err) {
      throw new InvalidTokenError("malformed token", { cause: err });
    }
    if (!alg || !algorithms.includes(alg)) throw new InvalidTokenError(`the algorithm '${alg}' is not accepted`);
    const statics = config.public_keys ? this.staticKeys(config.public_keys) : undefined;
    const remote = config.jwks_url ? this.cacheFor(config) : undefined;
    const getKey = async (header: JWSHeaderParameters, flat: FlattenedToken) => {
      if (statics) {
        try {
          return await statics(header, flat);
        } catch (err) {
          if (!remote || !(err instanceof errors.JWKSNoMatchingKey)) throw err;
        }
      }
      return remote!.key(header, flat);
    };
    try {
      const { payload } = await jwtVerify(token, getKey, {
        issuer: config.issuer,
        audience: config.audience,
        algorithms,
        clockTolerance: config.clock_skew_s,
        requiredClaims: ["exp", "sub"],
        ...(config.max_token_age_s ? { maxTokenAge: config.max_token_age_s } : {}),
        ...(this.options.now ? { currentDate: new Date(this.options.now()) } : {}),
      });
      return { claims: payload as Record<string, unknown>, config };
    } catch (err) {
      throw invalid(err);
    }
  }

  private staticKeys(source: NonNullable<JwtAuth["public_keys"]>): KeyGetter {
    // The catalog view is replaced, never mutated, on reload: its identity says whether the keys changed.
    if (this.statics?.source !== source) this.statics = { source, keys: staticKeySet(source) };
    return this.statics.keys;
  }

  private cacheFor(config: JwtAuth): JwksCache {
    const url = config.jwks_url!;
    const timing = {
      timeoutMs: config.jwks_timeout_ms,
      refetchIntervalMs: config.jwks_refetch_interval_s * 1000,
      maxAgeMs: config.jwks_max_age_s * 1000,
      maxStaleMs: config.jwks_max_stale_s * 1000,
    };
    let cache = this.jwks.get(url);
    if (!cache) {
      // A reload that changes the URL starts a new cache; the old one is dropped (one IdP at a time).
      this.jwks.clear();
      cache = new JwksCache(url, {
        ...timing,
        logger: this.options.logger,
        now: this.options.now,
        fetch: this.options.fetch,
      });
      this.jwks.set(url, cache);
    } else {
      cache.configure(timing);
    }
    return cache;
  }
}
