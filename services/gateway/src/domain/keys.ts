import { hash, randomBytes, timingSafeEqual } from "node:crypto";
import type { PriorityName } from "./priority.js";

/** A virtual key as stored (never the secret itself). */
export interface KeyRecord {
  id: string;
  name: string;
  team: string;
  user: string;
  /** Model ids or aliases the key may call; empty = all. */
  models: string[];
  /** Requests per minute; 0 = unlimited. */
  rpm: number;
  /** Tokens per minute; 0 = unlimited. */
  tpm: number;
  /** The class of the key's requests that state none (absent: interactive for sync and streaming, batch for jobs). */
  priority?: PriorityName;
  /** The highest class the key's requests may run at; a higher stated class is lowered to it. */
  maxPriority?: PriorityName;
  /** Requests of this key running at once across every replica; absent or 0 = unlimited. */
  maxConcurrent?: number;
  createdAt: string;
  /** SHA-256 of the secret, hex. */
  hash: string;
}

/** Who a request runs as once authenticated. */
export interface Principal {
  keyId: string;
  name: string;
  team: string;
  user: string;
  models: string[];
  rpm: number;
  tpm: number;
  /** The key's default priority class and cap (KeyRecord); absent for the admin and JWT callers. */
  priority?: PriorityName | undefined;
  maxPriority?: PriorityName | undefined;
  /** The key's concurrency limit (KeyRecord.maxConcurrent); absent or 0 = none. */
  maxConcurrent?: number | undefined;
  /** The operator's admin key: all models, no limits. */
  admin: boolean;
}

const SECRET_PREFIX = "tm-";

/** A new secret (shown once) and its id. The secret carries 256 random bits. */
export function newKey(): { id: string; secret: string; hash: string } {
  const secret = `${SECRET_PREFIX}${randomBytes(32).toString("base64url")}`;
  return { id: `key_${randomBytes(9).toString("base64url")}`, secret, hash: hashSecret(secret) };
}

/** SHA-256 hex of a secret; runs on every request, so the one-shot `hash` (no Hash object per call). */
export function hashSecret(secret: string): string {
  return hash("sha256", secret, "hex");
}

/** Compares two hex digests in constant time. */
export function sameHash(a: string, b: string): boolean {
  const x = Buffer.from(a, "hex");
  const y = Buffer.from(b, "hex");
  return x.length === y.length && timingSafeEqual(x, y);
}

/** `Bearer <token>` → token; anything else → undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m?.[1];
}

export function principalOf(record: KeyRecord): Principal {
  return {
    keyId: record.id,
    name: record.name,
    team: record.team,
    user: record.user,
    models: record.models,
    rpm: record.rpm,
    tpm: record.tpm,
    priority: record.priority,
    maxPriority: record.maxPriority,
    maxConcurrent: record.maxConcurrent,
    admin: false,
  };
}

/** Whether the key may call `model` (as requested: an id or alias), or the resolved catalog id. */
export function modelAllowed(p: Principal, requested: string, resolvedId: string | undefined): boolean {
  if (p.admin || p.models.length === 0) return true;
  return p.models.includes(requested) || (resolvedId !== undefined && p.models.includes(resolvedId));
}
