import { type Catalog, findModel, type ModelEntry } from "@tokenmesh/catalog";
import { AppError } from "@tokenmesh/runtime";
import { looksLikeJwt, principalFromClaims } from "./jwt-auth.js";
import { bearerToken, hashSecret, modelAllowed, type Principal, principalOf, sameHash } from "./keys.js";
import type { JwtVerifier, KeyStore } from "./ports.js";

/** The admin principal: all models, no limits, no budgets. */
const ADMIN: Principal = { keyId: "admin", name: "admin", team: "", user: "", models: [], rpm: 0, tpm: 0, admin: true };

/**
 * Resolves the caller from `Authorization: Bearer <key or JWT>` (design step 1): the operator's admin key, a
 * virtual key looked up by its SHA-256 hash and compared in constant time, or, when the catalog configures
 * `auth.jwt`, a JWT whose team and user come from its signed claims (jwt-auth.ts). Throws UNAUTHENTICATED
 * (`invalid_api_key`) for a missing, malformed, unknown or invalid credential.
 */
export class Authenticator {
  private readonly jwt: JwtVerifier | undefined;

  constructor(
    private readonly keys: KeyStore,
    /** The operator's admin key (SHA-256 hex), if one is configured. */
    private readonly adminKeyHash: string | undefined,
    /** Verifies bearer JWTs; defaults to the one the key store carries. */
    jwt?: JwtVerifier,
  ) {
    this.jwt = jwt;
  }

  async authenticate(authorization: string | undefined): Promise<Principal> {
    const token = bearerToken(authorization);
    if (!token) {
      throw new AppError("UNAUTHENTICATED", "Missing API key: send 'Authorization: Bearer <key>'", {
        reason: "invalid_api_key",
      });
    }
    const hash = hashSecret(token);
    if (this.adminKeyHash && sameHash(hash, this.adminKeyHash)) return ADMIN;
    // A virtual key (`tm-…`) never has a JWT's shape, so a JWT is never looked up as a key and vice versa.
    if (this.jwt?.enabled() && looksLikeJwt(token)) {
      const { claims, config } = await this.jwt.verify(token);
      return principalFromClaims(config, claims);
    }
    const record = await this.keys.byHash(hash);
    if (!record || !sameHash(record.hash, hash)) {
      throw new AppError("UNAUTHENTICATED", "Incorrect API key provided", { reason: "invalid_api_key" });
    }
    return principalOf(record);
  }
}

/** Whether a requested name is left to the router's `auto` resolution. */
export function isAuto(requested: string): boolean {
  return requested === "auto" || requested.startsWith("auto:");
}

/**
 * Checks that `requested` names a model this key may use and of the right kind; returns its catalog id and entry.
 * `auto` and `auto:<tier>` pass through for the router to resolve (entry undefined).
 */
export function resolveModel(
  catalog: Catalog,
  principal: Principal,
  requested: string,
  kind: "chat" | "embedding",
): { id: string; entry: ModelEntry | undefined } {
  const entry = findModel(catalog, requested);
  if (!entry && !isAuto(requested)) {
    throw new AppError("NOT_FOUND", `The model '${requested}' does not exist`, {
      reason: "model_not_found",
      param: "model",
    });
  }
  if (!modelAllowed(principal, requested, entry?.id)) {
    throw new AppError("PERMISSION_DENIED", `This key is not allowed to use the model '${requested}'`, {
      reason: "model_not_allowed",
      param: "model",
    });
  }
  if (entry && entry.kind !== kind) {
    throw new AppError(
      "INVALID_ARGUMENT",
      `The model '${requested}' is ${entry.kind === "chat" ? "a chat" : "an embedding"} model`,
      { param: "model" },
    );
  }
  return { id: entry?.id ?? requested, entry };
}
