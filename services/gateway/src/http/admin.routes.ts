import { Period, Scope, type UsageTotals } from "@tokenmesh/proto/cost/v1/cost";
import { AppError, callUnary } from "@tokenmesh/runtime";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { z } from "zod";
import type { GrpcCost } from "../adapters/cost.client.js";
import {
  AdminAuthenticator,
  type AdminPrincipal,
  type AdminRecord,
  type AuditEntry,
  actorOf,
  assertCanWrite,
  assertRoot,
  assertTeam,
  assertUnscoped,
  auditSummary,
  newAdminCredential,
} from "../domain/admin-access.js";
import { type KeyRecord, newKey } from "../domain/keys.js";
import type { AdminStore, AuditLog, KeyStore } from "../domain/ports.js";
import { PRIORITY_CLASSES } from "../domain/priority.js";
import { firstIssue } from "./openai.schema.js";

const CreateKeyBody = z.object({
  name: z.string().min(1).max(200),
  team: z.string().max(200).default(""),
  user: z.string().max(200).default(""),
  models: z.array(z.string().min(1)).default([]),
  rpm: z.number().int().min(0).default(0),
  tpm: z.number().int().min(0).default(0),
  /** The class of the key's requests that state none (interactive, standard or batch). */
  priority: z.enum(PRIORITY_CLASSES).optional(),
  /** The highest class the key's requests may run at. */
  max_priority: z.enum(PRIORITY_CLASSES).optional(),
  /** Requests of the key running at once across every replica; 0 or absent = unlimited. */
  max_concurrent: z.number().int().min(0).optional(),
});

const CreateAdminBody = z.object({
  name: z.string().min(1).max(200),
  role: z.enum(["admin", "viewer"]),
  /** The one team the credential may see and change; absent or "" = every team. */
  team: z.string().max(200).default(""),
});

const AuditListQuery = z.object({
  /** A credential id ("root" or adm_…). */
  actor: z.string().min(1).max(200).optional(),
  action: z.enum(["key.create", "key.revoke", "budget.set", "admin.create", "admin.revoke", "job.cancel"]).optional(),
  /** An ISO 8601 time; only changes at or after it. */
  since: z.iso
    .datetime({ offset: true })
    .transform((s) => new Date(s))
    .optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
});

const SCOPES = {
  key: Scope.SCOPE_KEY,
  team: Scope.SCOPE_TEAM,
  user: Scope.SCOPE_USER,
  model: Scope.SCOPE_MODEL,
} as const;
const PERIODS = { day: Period.PERIOD_DAY, month: Period.PERIOD_MONTH } as const;
const SCOPE_NAMES = Object.fromEntries(Object.entries(SCOPES).map(([k, v]) => [v, k])) as Record<Scope, string>;
const PERIOD_NAMES = Object.fromEntries(Object.entries(PERIODS).map(([k, v]) => [v, k])) as Record<Period, string>;

const BudgetBody = z.object({
  scope: z.enum(["key", "team", "user"]),
  id: z.string().min(1),
  period: z.enum(["day", "month"]),
  limitUsd: z.number().nonnegative(),
  hard: z.boolean().default(false),
  thresholds: z.array(z.number().gt(0).max(10)).optional(),
});

const BudgetQuery = z.object({
  scope: z.enum(["key", "team", "user"]),
  id: z.string().min(1),
  period: z.enum(["day", "month"]),
});

const UsageQuery = z
  .object({
    keyId: z.string().min(1).optional(),
    team: z.string().min(1).optional(),
    user: z.string().min(1).optional(),
    model: z.string().min(1).optional(),
    period: z.enum(["day", "month"]).default("month"),
    start: z
      .string()
      .regex(/^\d{4}-\d{2}-\d{2}$/)
      .optional(),
    end: z
      .string()
      .regex(/^\d{4}-\d{2}-\d{2}$/)
      .optional(),
  })
  .refine(
    (q) => [q.keyId, q.team, q.user, q.model].filter(Boolean).length === 1,
    "give exactly one of keyId, team, user, model",
  );

function parseOr400<T>(schema: z.ZodType<T>, value: unknown): T {
  const parsed = schema.safeParse(value ?? {});
  if (!parsed.success) {
    const { message, param } = firstIssue(parsed.error);
    throw new AppError("INVALID_ARGUMENT", message, { param });
  }
  return parsed.data;
}

function totals(t: UsageTotals | undefined) {
  return {
    costUsd: t?.costUsd ?? 0,
    requests: t?.requests ?? 0,
    inputTokens: t?.inputTokens ?? 0,
    outputTokens: t?.outputTokens ?? 0,
    cachedTokens: t?.cachedTokens ?? 0,
    errors: t?.errors ?? 0,
  };
}

/** The public view of a key record: never the hash, never the secret. */
function view(r: KeyRecord) {
  return {
    id: r.id,
    name: r.name,
    team: r.team,
    user: r.user,
    models: r.models,
    rpm: r.rpm,
    tpm: r.tpm,
    ...(r.priority ? { priority: r.priority } : {}),
    ...(r.maxPriority ? { max_priority: r.maxPriority } : {}),
    ...(r.maxConcurrent ? { max_concurrent: r.maxConcurrent } : {}),
    created_at: r.createdAt,
  };
}

/** The public view of an admin credential: never the hash, never the secret. */
function adminView(r: AdminRecord) {
  return { id: r.id, name: r.name, role: r.role, team: r.team, created_at: r.createdAt, created_by: r.createdBy };
}

function auditView(e: AuditEntry) {
  return {
    request_id: e.requestId,
    time: e.time.toISOString(),
    actor: { id: e.actor.credentialId, name: e.actor.name, role: e.actor.role, team: e.actor.team },
    action: e.action,
    target: { type: e.targetType, id: e.targetId },
    team: e.team,
    summary: e.summary,
    source_ip: e.sourceIp,
  };
}

/**
 * The admin API. Callers authenticate with the root key (`TOKENMESH_ADMIN_KEY`) or an admin credential the root
 * created (`POST /admin/admins`): role `admin` reads and changes, `viewer` only reads (GET); a credential scoped to
 * a team sees and changes only that team's keys, budgets and usage. Every change is published on `llm.audit.v1`
 * (one event per change, after it took effect) and listed by `GET /admin/audit`. Without a root key configured the
 * admin API answers 403 to everything.
 */
export function registerAdminRoutes(
  app: FastifyInstance,
  deps: {
    keys: KeyStore;
    adminKeyHash: string | undefined;
    admins: AdminStore;
    audit: AuditLog;
    cost: GrpcCost;
    /** Called before `PUT /admin/budgets` answers: the gateways must enforce the budget from then on. */
    onBudgetSet: (scope: string, id: string, scopeHard: boolean) => Promise<void>;
  },
): void {
  const authenticator = new AdminAuthenticator(deps.admins, deps.adminKeyHash);
  const principals = new WeakMap<FastifyRequest, AdminPrincipal>();
  const principal = (req: FastifyRequest): AdminPrincipal => {
    const p = principals.get(req);
    if (!p) throw new AppError("INTERNAL", "admin request without a principal");
    return p;
  };
  const audit = (req: FastifyRequest, change: Omit<AuditEntry, "requestId" | "time" | "actor" | "sourceIp">) =>
    deps.audit.record({
      ...change,
      requestId: req.id,
      time: new Date(),
      actor: actorOf(principal(req)),
      sourceIp: req.ip,
    });
  /** The key's team, for scope checks; NOT_FOUND for an unknown key. */
  const keyTeam = async (id: string): Promise<string> => {
    const r = await deps.keys.get(id);
    if (!r) throw new AppError("NOT_FOUND", `No key ${id}`);
    return r.team;
  };
  /** Refuses a team-scoped caller a budget or usage scope that is not its team's. */
  const assertScope = async (p: AdminPrincipal, scope: "key" | "team" | "user" | "model", id: string) => {
    if (p.team === "") return;
    if (scope === "team") assertTeam(p, id, `use team '${id}'`);
    else if (scope === "key") assertTeam(p, await keyTeam(id).catch(() => ""), `use key '${id}'`);
    else assertUnscoped(p, `use a ${scope} scope (it spans teams)`);
  };

  app.register(async (admin) => {
    admin.addHook("onRequest", async (req) => {
      const p = await authenticator.authenticate(req.headers.authorization);
      if (req.method !== "GET" && req.method !== "HEAD") assertCanWrite(p);
      principals.set(req, p);
    });

    admin.post("/admin/admins", async (req, reply) => {
      assertRoot(principal(req), "create admin credentials");
      const body = parseOr400(CreateAdminBody, req.body);
      const { id, secret, hash } = newAdminCredential();
      const record: AdminRecord = {
        id,
        ...body,
        createdAt: new Date().toISOString(),
        createdBy: principal(req).id,
        hash,
      };
      await deps.admins.create(record);
      await audit(req, {
        action: "admin.create",
        targetType: "admin",
        targetId: id,
        team: record.team,
        summary: auditSummary({ name: record.name, role: record.role, team: record.team }),
      });
      return reply.code(201).send({ ...adminView(record), secret });
    });

    admin.get("/admin/admins", async (req) => {
      assertUnscoped(principal(req), "list admin credentials");
      return { data: (await deps.admins.list()).map(adminView) };
    });

    admin.delete<{ Params: { id: string } }>("/admin/admins/:id", async (req) => {
      assertRoot(principal(req), "revoke admin credentials");
      const record = await deps.admins.get(req.params.id);
      if (!record || !(await deps.admins.revoke(req.params.id))) {
        throw new AppError("NOT_FOUND", `No admin credential ${req.params.id}`);
      }
      await audit(req, {
        action: "admin.revoke",
        targetType: "admin",
        targetId: record.id,
        team: record.team,
        summary: auditSummary({ name: record.name, role: record.role, team: record.team }),
      });
      return { id: req.params.id, deleted: true };
    });

    admin.get("/admin/audit", async (req) => {
      const q = parseOr400(AuditListQuery, req.query);
      const p = principal(req);
      const { events, truncated } = await deps.audit.list({ ...q, ...(p.team !== "" ? { team: p.team } : {}) });
      return { data: events.map(auditView), truncated };
    });

    admin.post("/admin/keys", async (req, reply) => {
      const p = principal(req);
      const body = parseOr400(CreateKeyBody, req.body);
      // A team-scoped admin's keys belong to its team unless the body names another one (refused).
      const team = body.team === "" && p.team !== "" ? p.team : body.team;
      assertTeam(p, team, `create a key for team '${team}'`);
      const { id, secret, hash } = newKey();
      const { priority, max_priority, max_concurrent, ...fields } = body;
      const record: KeyRecord = {
        id,
        ...fields,
        ...(priority ? { priority } : {}),
        ...(max_priority ? { maxPriority: max_priority } : {}),
        ...(max_concurrent ? { maxConcurrent: max_concurrent } : {}),
        team,
        createdAt: new Date().toISOString(),
        hash,
      };
      await deps.keys.create(record);
      await audit(req, {
        action: "key.create",
        targetType: "key",
        targetId: id,
        team,
        summary: auditSummary({
          name: record.name,
          team,
          user: record.user,
          models: record.models,
          rpm: record.rpm,
          tpm: record.tpm,
          ...(priority ? { priority } : {}),
          ...(max_priority ? { max_priority } : {}),
          ...(max_concurrent ? { max_concurrent } : {}),
        }),
      });
      return reply.code(201).send({ ...view(record), key: secret });
    });

    admin.get("/admin/keys", async (req) => {
      const p = principal(req);
      const all = await deps.keys.list();
      return { data: all.filter((r) => p.team === "" || r.team === p.team).map(view) };
    });

    admin.get<{ Params: { id: string } }>("/admin/keys/:id", async (req) => {
      const r = await deps.keys.get(req.params.id);
      if (!r) throw new AppError("NOT_FOUND", `No key ${req.params.id}`);
      assertTeam(principal(req), r.team, `read key '${r.id}'`);
      return view(r);
    });

    admin.delete<{ Params: { id: string } }>("/admin/keys/:id", async (req) => {
      const r = await deps.keys.get(req.params.id);
      if (!r) throw new AppError("NOT_FOUND", `No key ${req.params.id}`);
      assertTeam(principal(req), r.team, `revoke key '${r.id}'`);
      if (!(await deps.keys.revoke(req.params.id))) throw new AppError("NOT_FOUND", `No key ${req.params.id}`);
      await audit(req, {
        action: "key.revoke",
        targetType: "key",
        targetId: r.id,
        team: r.team,
        summary: auditSummary({ name: r.name, team: r.team, user: r.user }),
      });
      return { id: req.params.id, deleted: true };
    });

    admin.put("/admin/budgets", async (req) => {
      const b = parseOr400(BudgetBody, req.body);
      await assertScope(principal(req), b.scope, b.id);
      const client = deps.cost.client;
      const res = await callUnary(
        client.setBudget.bind(client),
        {
          budget: {
            scope: SCOPES[b.scope],
            id: b.id,
            period: PERIODS[b.period],
            limitUsd: b.limitUsd,
            hard: b.hard,
            thresholds: b.thresholds ?? [],
          },
        },
        { deadlineMs: 5_000 },
      );
      await deps.onBudgetSet(b.scope, b.id, res.scopeHard);
      const saved = res.budget!;
      await audit(req, {
        action: "budget.set",
        targetType: "budget",
        targetId: `${b.scope}:${b.id}:${b.period}`,
        team: b.scope === "team" ? b.id : b.scope === "key" ? await keyTeam(b.id).catch(() => "") : "",
        summary: auditSummary({
          scope: b.scope,
          id: b.id,
          period: b.period,
          limit_usd: saved.limitUsd,
          hard: saved.hard,
          thresholds: saved.thresholds,
        }),
      });
      return {
        scope: SCOPE_NAMES[saved.scope],
        id: saved.id,
        period: PERIOD_NAMES[saved.period],
        limitUsd: saved.limitUsd,
        hard: saved.hard,
        thresholds: saved.thresholds,
      };
    });

    admin.get("/admin/budgets", async (req) => {
      const q = parseOr400(BudgetQuery, req.query);
      await assertScope(principal(req), q.scope, q.id);
      const client = deps.cost.client;
      const res = await callUnary(
        client.getBudget.bind(client),
        { scope: SCOPES[q.scope], id: q.id, period: PERIODS[q.period] },
        { deadlineMs: 5_000 },
      );
      const b = res.budget;
      return {
        budget:
          res.found && b
            ? {
                scope: SCOPE_NAMES[b.scope],
                id: b.id,
                period: PERIOD_NAMES[b.period],
                limitUsd: b.limitUsd,
                hard: b.hard,
                thresholds: b.thresholds,
              }
            : null,
        spentUsd: res.spentUsd,
        heldUsd: res.heldUsd,
      };
    });

    admin.get("/admin/usage", async (req) => {
      const q = parseOr400(UsageQuery, req.query);
      const [scope, id] = q.keyId
        ? (["key", q.keyId] as const)
        : q.team
          ? (["team", q.team] as const)
          : q.user
            ? (["user", q.user] as const)
            : (["model", q.model!] as const);
      await assertScope(principal(req), scope, id);
      const client = deps.cost.client;
      const res = await callUnary(
        client.getUsage.bind(client),
        {
          scope: SCOPES[scope],
          id,
          period: PERIODS[q.period],
          startDay: q.start ?? "",
          endDay: q.end ?? "",
        },
        { deadlineMs: 10_000 },
      );
      return {
        ...totals(res.totals),
        byModel: Object.fromEntries(Object.entries(res.byModel).map(([m, t]) => [m, totals(t)])),
      };
    });
  });
}
