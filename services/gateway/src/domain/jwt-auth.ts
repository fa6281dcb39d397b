import { AppError } from "@tokenmesh/runtime";
import { z } from "zod";
import type { Principal } from "./keys.js";

/**
 * Asymmetric JWS algorithms a bearer JWT may use. `none` and the HMAC family (HS*) are never accepted: the gateway
 * only holds public keys, and an HS* token "signed" with a public key is the classic algorithm-confusion attack.
 */
export const JWT_ALGORITHMS = [
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
  "Ed25519",
] as const;

/** The most clock skew an operator may allow between the IdP and the gateway. */
export const MAX_CLOCK_SKEW_S = 300;

const ClaimName = z
  .string()
  .min(1)
  .max(200)
  .describe("a claim name, or a dotted path into nested claims (e.g. `tokenmesh.team`)");

const StaticKey = z
  .object({
    kid: z.string().min(1).optional(),
    /** An SPKI public key (`-----BEGIN PUBLIC KEY-----`). */
    pem: z.string().min(1).optional(),
    /** A public JWK (no `d`, no `kty: oct`). */
    jwk: z.record(z.string(), z.unknown()).optional(),
  })
  .strict()
  .refine((k) => (k.pem === undefined) !== (k.jwk === undefined), "give exactly one of pem, jwk")
  .refine((k) => !k.pem?.includes("PRIVATE KEY"), "public_keys holds public keys only, never a private key")
  .refine((k) => k.jwk === undefined || (k.jwk.d === undefined && k.jwk.kty !== "oct"), {
    message: "public_keys holds asymmetric public keys only (no `d`, no `kty: oct`)",
  });

const LimitTier = z
  .object({
    /** Requests per minute per token subject; 0 = unlimited. */
    rpm: z.number().int().min(0).default(0),
    /** Tokens per minute per token subject; 0 = unlimited. */
    tpm: z.number().int().min(0).default(0),
    /** Models the tier may call (ids or aliases); absent = all. */
    models: z.array(z.string().min(1)).min(1).optional(),
  })
  .strict();

/** The `auth.jwt` section of the catalog. */
export const JwtAuthSchema = z
  .object({
    /** The exact `iss` a token must carry. */
    issuer: z.string().min(1),
    /** The `aud` a token must carry (one of, when a list). */
    audience: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
    /** Where the IdP publishes its signing keys (OIDC `jwks_uri`). */
    jwks_url: z.url({ protocol: /^https?$/ }).optional(),
    /** Keys configured inline instead of (or besides) a JWKS. */
    public_keys: z.array(StaticKey).min(1).optional(),
    /** Subset of JWT_ALGORITHMS to accept; default all of them. */
    algorithms: z.array(z.enum(JWT_ALGORITHMS)).min(1).optional(),
    /** Allowed difference between the IdP's clock and ours for `exp`, `nbf` and `iat`. */
    clock_skew_s: z.number().int().min(0).max(MAX_CLOCK_SKEW_S).default(30),
    /** Reject tokens issued (`iat`) longer ago than this, whatever their `exp`; absent = only `exp` counts. */
    max_token_age_s: z.number().int().positive().optional(),
    claims: z
      .object({
        /** The claim naming the caller's team (required in every token). */
        team: ClaimName,
        /** The claim naming the user; default `sub`. */
        user: ClaimName.default("sub"),
        /** A claim listing the models the token may call (array, or space/comma separated string). */
        models: ClaimName.optional(),
        /** A claim naming one of `tiers`. */
        tier: ClaimName.optional(),
      })
      .strict(),
    /** Rate limits (and optionally models) by tier name; a token picks one with the tier claim. */
    tiers: z.record(z.string().min(1), LimitTier).default({}),
    /** The tier of a token without a tier claim; absent = no rate limits for such tokens. */
    default_tier: z.string().min(1).optional(),
    /** After a token with an unknown `kid`, the JWKS is fetched again at most once per this many seconds. */
    jwks_refetch_interval_s: z.number().min(0.1).max(3600).default(10),
    /** A fetched JWKS is refreshed in the background after this long (kept, and used, if the IdP is down). */
    jwks_max_age_s: z.number().int().min(1).default(600),
    /** How long cached keys keep working while the JWKS cannot be fetched; past it tokens are refused. */
    jwks_max_stale_s: z.number().int().min(1).default(86_400),
    jwks_timeout_ms: z.number().int().min(100).max(30_000).default(5_000),
  })
  .strict()
  .refine((c) => c.jwks_url !== undefined || c.public_keys !== undefined, "give jwks_url or public_keys")
  .refine((c) => c.default_tier === undefined || c.default_tier in c.tiers, {
    message: "default_tier must name one of tiers",
    path: ["default_tier"],
  });

export type JwtAuth = z.infer<typeof JwtAuthSchema>;

const AuthSectionSchema = z.object({ jwt: JwtAuthSchema.optional() }).strict();

/**
 * Validates the catalog's `auth` section; returns the JWT options, or undefined when JWT sign-in is off. Throws
 * (so a LiveCatalog keeps the previous view) on an invalid section, every problem listed.
 */
export function compileAuthSection(section: unknown): JwtAuth | undefined {
  if (section === undefined) return undefined;
  const parsed = AuthSectionSchema.safeParse(section);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `auth.${i.path.join(".")}: ${i.message}`);
    throw new Error(`invalid auth section: ${problems.join("; ")}`);
  }
  return parsed.data.jwt;
}

/** A bearer JWT that failed verification (bad signature, expired, wrong audience…): always UNAUTHENTICATED. */
export class InvalidTokenError extends AppError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super("UNAUTHENTICATED", `Invalid bearer token: ${message}`, { reason: "invalid_api_key", ...options });
    this.name = "InvalidTokenError";
  }
}

/** Whether a bearer token has the shape of a compact JWS (three base64url parts); says nothing of its validity. */
export function looksLikeJwt(token: string): boolean {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token);
}

/** The key id every JWT principal gets: one per issuer and subject, never chosen by anything unsigned. */
export function jwtKeyId(issuer: string, subject: string): string {
  return `jwt:${issuer}#${subject}`;
}

function claimAt(claims: Record<string, unknown>, path: string): unknown {
  if (path in claims) return claims[path];
  let at: unknown = claims;
  for (const part of path.split(".")) {
    if (at === null || typeof at !== "object") return undefined;
    at = (at as Record<string, unknown>)[part];
  }
  return at;
}

function stringClaim(claims: Record<string, unknown>, path: string, what: string): string {
  const v = claimAt(claims, path);
  if (typeof v === "number" && Number.isFinite(v)) return String(v);
  if (typeof v !== "string" || v.length === 0 || v.length > 200) {
    throw new InvalidTokenError(`the '${path}' claim (${what}) is missing or not a string`);
  }
  return v;
}

function listClaim(claims: Record<string, unknown>, path: string): string[] | undefined {
  const v = claimAt(claims, path);
  if (v === undefined || v === null) return undefined;
  const list = typeof v === "string" ? v.split(/[\s,]+/) : Array.isArray(v) ? v : undefined;
  if (!list?.every((m) => typeof m === "string")) {
    throw new InvalidTokenError(`the '${path}' claim (models) must be a list of model names`);
  }
  return list.filter((m) => m.length > 0);
}

/**
 * The principal of a verified token (signature, `iss`, `aud`, `exp`, `nbf` already checked by the verifier):
 * team and user from the configured claims, key id `jwt:<iss>#<sub>`, rate limits from the token's tier, models
 * from the models claim and the tier (both when both are given). A token whose claims grant no model, name an
 * unknown tier, or lack the team, user or `sub` claim is refused (UNAUTHENTICATED).
 */
export function principalFromClaims(config: JwtAuth, claims: Record<string, unknown>): Principal {
  const sub = stringClaim(claims, "sub", "subject");
  const team = stringClaim(claims, config.claims.team, "team");
  const user = stringClaim(claims, config.claims.user, "user");
  const tierName = config.claims.tier ? claimAt(claims, config.claims.tier) : undefined;
  if (tierName !== undefined && typeof tierName !== "string") {
    throw new InvalidTokenError(`the '${config.claims.tier}' claim (tier) must be a string`);
  }
  const name = tierName ?? config.default_tier;
  const tier = name === undefined ? undefined : Object.hasOwn(config.tiers, name) ? config.tiers[name] : undefined;
  if (name !== undefined && !tier) throw new InvalidTokenError(`unknown tier '${name}'`);
  const claimed = config.claims.models ? listClaim(claims, config.claims.models) : undefined;
  let models = claimed ?? tier?.models ?? [];
  if (claimed && tier?.models) models = claimed.filter((m) => tier.models!.includes(m));
  // An empty list means "every model" to the rest of the gateway, so a token that grants none is refused here.
  if ((claimed !== undefined || tier?.models !== undefined) && models.length === 0) {
    throw new InvalidTokenError("the token grants no model");
  }
  return {
    keyId: jwtKeyId(config.issuer, sub),
    name: user,
    team,
    user,
    models,
    rpm: tier?.rpm ?? 0,
    tpm: tier?.tpm ?? 0,
    admin: false,
  };
}
