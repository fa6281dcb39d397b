import { randomBytes } from "node:crypto";
import { AppError } from "@tokenmesh/runtime";
import { bearerToken, hashSecret, sameHash } from "./keys.js";
import type { AdminStore } from "./ports.js";

/** `admin` may change what it can see; `viewer` may only read (GET). */
export type AdminRole = "admin" | "viewer";

/** An admin credential as stored (never the secret itself). Created by the root admin through `POST /admin/admins`. */
export interface AdminRecord {
  id: string;
  name: string;
  role: AdminRole;
  /** The one team this credential may see and change; "" = every team. */
  team: string;
  createdAt: string;
  /** The credential id that created it. */
  createdBy: string;
  /** SHA-256 of the secret, hex. */
  hash: string;
}

/** Who an admin request runs as. */
export interface AdminPrincipal {
  /** "root" for TOKENMESH_ADMIN_KEY, else the credential's id. */
  id: string;
  name: string;
  role: AdminRole;
  team: string;
  /** TOKENMESH_ADMIN_KEY: the only credential that may create or revoke admin credentials. */
  root: boolean;
}

/** The operator's TOKENMESH_ADMIN_KEY. */
export const ROOT_ADMIN: AdminPrincipal = { id: "root", name: "root", role: "admin", team: "", root: true };

const ADMIN_SECRET_PREFIX = "tma-";

/** A new admin secret (shown once), its id and hash. 256 random bits, distinct prefix from virtual keys. */
export function newAdminCredential(): { id: string; secret: string; hash: string } {
  const secret = `${ADMIN_SECRET_PREFIX}${randomBytes(32).toString("base64url")}`;
  return { id: `adm_${randomBytes(9).toString("base64url")}`, secret, hash: hashSecret(secret) };
}

/**
 * Resolves the caller of the admin API from `Authorization: Bearer`: the root key (TOKENMESH_ADMIN_KEY) or an admin
 * credential from the store, compared by SHA-256 hash in constant time. Without a root key the whole admin API is
 * disabled (PERMISSION_DENIED), as before admin credentials existed. A virtual key or a JWT is never an admin.
 */
export class AdminAuthenticator {
  constructor(
    private readonly admins: AdminStore,
    private readonly rootKeyHash: string | undefined,
  ) {}

  async authenticate(authorization: string | undefined): Promise<AdminPrincipal> {
    if (!this.rootKeyHash) {
      throw new AppError("PERMISSION_DENIED", "The admin API is disabled: set TOKENMESH_ADMIN_KEY");
    }
    const token = bearerToken(authorization);
    if (!token) throw new AppError("UNAUTHENTICATED", "Missing admin key", { reason: "invalid_api_key" });
    const hash = hashSecret(token);
    if (sameHash(hash, this.rootKeyHash)) return ROOT_ADMIN;
    const record = await this.admins.byHash(hash);
    if (!record || !sameHash(record.hash, hash)) {
      throw new AppError("PERMISSION_DENIED", "This key is not an admin key", { reason: "invalid_api_key" });
    }
    return { id: record.id, name: record.name, role: record.role, team: record.team, root: false };
  }
}

/** Refuses a change by a viewer. */
export function assertCanWrite(p: AdminPrincipal): void {
  if (p.role !== "admin") {
    throw new AppError("PERMISSION_DENIED", "This admin credential is read-only (viewer)", {
      reason: "insufficient_role",
    });
  }
}

/** Refuses anyone but the root admin (managing admin credentials). */
export function assertRoot(p: AdminPrincipal, what: string): void {
  if (!p.root) {
    throw new AppError("PERMISSION_DENIED", `Only the root admin key may ${what}`, { reason: "insufficient_role" });
  }
}

/** Refuses a team-scoped credential anything that is not its team's (`team` "" = not any one team's). */
export function assertTeam(p: AdminPrincipal, team: string, what: string): void {
  if (p.team !== "" && team !== p.team) {
    throw new AppError("PERMISSION_DENIED", `This admin credential is scoped to team '${p.team}' and may not ${what}`, {
      reason: "out_of_team_scope",
    });
  }
}

/** Refuses a team-scoped credential something that spans teams (user or model scopes). */
export function assertUnscoped(p: AdminPrincipal, what: string): void {
  if (p.team !== "") {
    throw new AppError("PERMISSION_DENIED", `This admin credential is scoped to team '${p.team}' and may not ${what}`, {
      reason: "out_of_team_scope",
    });
  }
}

/** Who made a change, as the audit trail records it. */
export interface AuditActor {
  credentialId: string;
  name: string;
  role: AdminRole;
  team: string;
}

/** One audited change (`llm.audit.v1`). */
export interface AuditEntry {
  requestId: string;
  time: Date;
  actor: AuditActor;
  action: "key.create" | "key.revoke" | "budget.set" | "admin.create" | "admin.revoke" | "job.cancel";
  targetType: "key" | "budget" | "admin" | "job";
  targetId: string;
  /** The team the target belongs to; "" for none or unknown. */
  team: string;
  /** Redacted fields of the change; built by {@link auditSummary}. */
  summary: Record<string, string>;
  sourceIp: string;
}

export interface AuditQuery {
  actor?: string;
  action?: string;
  since?: Date;
  /** Only events of this team (a team-scoped reader). */
  team?: string;
  limit: number;
}

export function actorOf(p: AdminPrincipal): AuditActor {
  return { credentialId: p.id, name: p.name, role: p.role, team: p.team };
}

/** Field names that may never reach the audit trail, whatever a caller passes. */
const SECRET_FIELD = /secret|hash|token|password|^key$/i;
const MAX_SUMMARY_VALUE = 500;

/**
 * The audit summary of a change: scalars and lists rendered as strings, values cut at 500 characters, and any
 * field whose name suggests a secret dropped, so that a careless caller cannot leak one into the trail.
 */
export function auditSummary(fields: Record<string, string | number | boolean | string[] | number[] | undefined>) {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined || SECRET_FIELD.test(k)) continue;
    const s = Array.isArray(v) ? v.join(",") : String(v);
    out[k] = s.length > MAX_SUMMARY_VALUE ? `${s.slice(0, MAX_SUMMARY_VALUE)}…` : s;
  }
  return out;
}
