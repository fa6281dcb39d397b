import { describe, expect, it } from "vitest";
import {
  AdminAuthenticator,
  type AdminPrincipal,
  type AdminRecord,
  assertCanWrite,
  assertRoot,
  assertTeam,
  assertUnscoped,
  auditSummary,
  newAdminCredential,
  ROOT_ADMIN,
} from "./admin-access.js";
import { hashSecret } from "./keys.js";
import type { AdminStore } from "./ports.js";

const viewer: AdminPrincipal = { id: "adm_v", name: "v", role: "viewer", team: "", root: false };
const scoped: AdminPrincipal = { id: "adm_s", name: "s", role: "admin", team: "red", root: false };

function store(records: AdminRecord[]): AdminStore {
  return {
    create: async () => undefined,
    list: async () => records,
    get: async (id) => records.find((r) => r.id === id),
    revoke: async () => true,
    byHash: async (hash) => records.find((r) => r.hash === hash),
  };
}

describe("AdminAuthenticator", () => {
  const cred = newAdminCredential();
  const record: AdminRecord = {
    id: cred.id,
    name: "ops",
    role: "viewer",
    team: "red",
    createdAt: "",
    createdBy: "root",
    hash: cred.hash,
  };
  const auth = new AdminAuthenticator(store([record]), hashSecret("root-key-0123456789"));

  it("knows the root key and stored credentials", async () => {
    expect(await auth.authenticate("Bearer root-key-0123456789")).toEqual(ROOT_ADMIN);
    expect(await auth.authenticate(`Bearer ${cred.secret}`)).toEqual({
      id: cred.id,
      name: "ops",
      role: "viewer",
      team: "red",
      root: false,
    });
  });

  it("refuses an unknown key, and everything when no root key is configured", async () => {
    await expect(auth.authenticate("Bearer tma-unknown")).rejects.toMatchObject({ code: "PERMISSION_DENIED" });
    await expect(auth.authenticate(undefined)).rejects.toMatchObject({ code: "UNAUTHENTICATED" });
    const off = new AdminAuthenticator(store([record]), undefined);
    await expect(off.authenticate(`Bearer ${cred.secret}`)).rejects.toThrow(/disabled/);
  });
});

describe("role and team checks", () => {
  it("lets only admins write and only root manage credentials", () => {
    expect(() => assertCanWrite(viewer)).toThrow(/read-only/);
    expect(() => assertCanWrite(scoped)).not.toThrow();
    expect(() => assertRoot(scoped, "create admins")).toThrow(/root/);
    expect(() => assertRoot(ROOT_ADMIN, "create admins")).not.toThrow();
  });

  it("keeps a team-scoped credential inside its team", () => {
    expect(() => assertTeam(scoped, "red", "x")).not.toThrow();
    expect(() => assertTeam(scoped, "blue", "x")).toThrow(/scoped to team 'red'/);
    expect(() => assertTeam(scoped, "", "x")).toThrow();
    expect(() => assertUnscoped(scoped, "x")).toThrow();
    expect(() => assertTeam(viewer, "blue", "x")).not.toThrow();
  });
});

describe("auditSummary", () => {
  it("renders values as strings and drops anything named like a secret", () => {
    expect(
      auditSummary({
        name: "n",
        rpm: 5,
        hard: true,
        models: ["a", "b"],
        key: "tm-x",
        secret: "s",
        hash: "h",
        user: undefined,
      }),
    ).toEqual({ name: "n", rpm: "5", hard: "true", models: "a,b" });
  });

  it("cuts long values", () => {
    expect(auditSummary({ name: "x".repeat(600) }).name).toHaveLength(501);
  });
});
