import { Period, Scope, type UsageTotals } from "@tokenmesh/proto/cost/v1/cost";
import { AppError, callUnary } from "@tokenmesh/runtime";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { z } from "zod";
import type { GrpcCost } from "../adapters/cost.client.js";
import { bearerToken, hashSecret, type KeyRecord, newKey, sameHash } from "../domain/keys.js";
import type { KeyStore } from "../domain/ports.js";
import { firstIssue } from "./openai.schema.js";

const CreateKeyBody = z.object({
  name: z.string().min(1).max(200),
  team: z.string().max(200).default(""),
  user: z.string().max(200).default(""),
  models: z.array(z.string().min(1)).default([]),
  rpm: z.number().int().min(0).default(0),
  tpm: z.number().int().min(0).default(0),
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
    created_at: r.createdAt,
  };
}

/**
 * The admin API (`Authorization: Bearer $TOKENMESH_ADMIN_KEY`): virtual keys. Without an admin key configured the
 * admin API answers 403 to everything.
 */
export function registerAdminRoutes(
  app: FastifyInstance,
  deps: {
    keys: KeyStore;
    adminKeyHash: string | undefined;
    cost: GrpcCost;
    /** Called before `PUT /admin/budgets` answers: the gateways must enforce the budget from then on. */
    onBudgetSet: (scope: string, id: string, scopeHard: boolean) => Promise<void>;
  },
): void {
  const requireAdmin = async (req: FastifyRequest) => {
    if (!deps.adminKeyHash)
      throw new AppError("PERMISSION_DENIED", "The admin API is disabled: set TOKENMESH_ADMIN_KEY");
    const token = bearerToken(req.headers.authorization);
    if (!token) throw new AppError("UNAUTHENTICATED", "Missing admin key", { reason: "invalid_api_key" });
    if (!sameHash(hashSecret(token), deps.adminKeyHash)) {
      throw new AppError("PERMISSION_DENIED", "This key is not the admin key", { reason: "invalid_api_key" });
    }
  };

  app.register(async (admin) => {
    admin.addHook("onRequest", requireAdmin);

    admin.post("/admin/keys", async (req, reply) => {
      const body = parseOr400(CreateKeyBody, req.body);
      const { id, secret, hash } = newKey();
      const record: KeyRecord = { id, ...body, createdAt: new Date().toISOString(), hash };
      await deps.keys.create(record);
      return reply.code(201).send({ ...view(record), key: secret });
    });

    admin.get("/admin/keys", async () => ({ data: (await deps.keys.list()).map(view) }));

    admin.get<{ Params: { id: string } }>("/admin/keys/:id", async (req) => {
      const r = await deps.keys.get(req.params.id);
      if (!r) throw new AppError("NOT_FOUND", `No key ${req.params.id}`);
      return view(r);
    });

    admin.delete<{ Params: { id: string } }>("/admin/keys/:id", async (req) => {
      if (!(await deps.keys.revoke(req.params.id))) throw new AppError("NOT_FOUND", `No key ${req.params.id}`);
      return { id: req.params.id, deleted: true };
    });

    admin.put("/admin/budgets", async (req) => {
      const b = parseOr400(BudgetBody, req.body);
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
