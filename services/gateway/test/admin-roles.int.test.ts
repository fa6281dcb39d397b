import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AuditTrailEvent, connectNats, decodeEvent, type NatsConnection, Subjects } from "@tokenmesh/events";
import { CostServiceService } from "@tokenmesh/proto/cost/v1/cost";
import type { AuditEvent } from "@tokenmesh/proto/events/v1/events";
import { AppError, GrpcServer, Lifecycle, parseEnv } from "@tokenmesh/runtime";
import { createLogger } from "@tokenmesh/telemetry";
import { waitFor } from "@tokenmesh/testing";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createApp } from "../src/app.js";
import { GatewayConfigSchema } from "../src/config.js";
import { scriptedRouter } from "./scripted-router.js";

const ROOT = "test-admin-key-roles-0123456789";
const logger = createLogger({ service: "gateway-roles-test", level: "silent" });
const CATALOG = `
models:
  - { id: test-model, engine: openai, base_url: "http://127.0.0.1:9/v1", upstream_model: test }
`;

/** Every audit event published while the tests run, as the bus carries them. */
const published: AuditEvent[] = [];
let dir: string;
let router: GrpcServer;
let cost: GrpcServer;
let app: ReturnType<typeof createApp>;
let nc: NatsConnection;
let base: string;

/** A scripted cost service: budgets are echoed back; nothing is hard. */
function startCost(): GrpcServer {
  const server = new GrpcServer({ logger });
  const no = async () => {
    throw new AppError("FAILED_PRECONDITION", "not scripted");
  };
  server.add(CostServiceService, {
    reserve: no,
    release: no,
    async getUsage() {
      return { totals: undefined, byModel: {} };
    },
    async getBudget() {
      return { budget: undefined, found: false, spentUsd: 0, heldUsd: 0 };
    },
    async setBudget(req) {
      return { budget: req.budget, scopeHard: false };
    },
    async listHardScopes() {
      return { scopes: [] };
    },
  });
  return server;
}

function startRouter(): GrpcServer {
  return scriptedRouter(logger);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "gateway-roles-"));
  await writeFile(join(dir, "mesh.yaml"), CATALOG);
  router = startRouter();
  cost = startCost();
  const routerPort = await router.listen("127.0.0.1", 0);
  const costPort = await cost.listen("127.0.0.1", 0);
  router.setServing(true);
  cost.setServing(true);
  const natsUrl = inject("natsUrl");
  nc = await connectNats({ servers: natsUrl, name: "gateway-roles-observer", logger });
  const sub = nc.subscribe(Subjects.audit);
  void (async () => {
    for await (const msg of sub) published.push(decodeEvent(AuditTrailEvent, msg.data));
  })();
  const config = parseEnv(GatewayConfigSchema, {
    NATS_URL: natsUrl,
    REDIS_URL: inject("redisUrl"),
    ROUTER_ADDR: `127.0.0.1:${routerPort}`,
    GUARD_ADDR: "127.0.0.1:9",
    COST_ADDR: `127.0.0.1:${costPort}`,
    GATEWAY_HOST: "127.0.0.1",
    GATEWAY_HTTP_PORT: "0",
    GATEWAY_GRPC_PORT: "0",
    TOKENMESH_ADMIN_KEY: ROOT,
    MESH_CONFIG: join(dir, "mesh.yaml"),
    LOG_LEVEL: "silent",
  });
  app = createApp(config, { logger, lifecycle: new Lifecycle({ logger, deadlineMs: 5_000 }) });
  await app.start();
  base = `http://127.0.0.1:${app.httpPort}`;
});

afterAll(async () => {
  await app?.stop();
  await router?.shutdown(100);
  await cost?.shutdown(100);
  await nc?.drain();
  await rm(dir, { recursive: true, force: true });
});

// biome-ignore lint/suspicious/noExplicitAny: response bodies are read loosely
type Json = any;

async function call(bearer: string, method: string, path: string, body?: unknown) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${bearer}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return {
    status: res.status,
    requestId: res.headers.get("x-request-id") ?? "",
    text,
    body: (text ? JSON.parse(text) : undefined) as Json,
  };
}

async function createAdmin(name: string, role: string, team?: string) {
  const res = await call(ROOT, "POST", "/admin/admins", { name, role, ...(team ? { team } : {}) });
  expect(res.status).toBe(201);
  return res.body as { id: string; secret: string; role: string; team: string };
}

/** The one audit event the bus carried for an admin request; fails on none or several. */
async function onlyAuditOf(requestId: string): Promise<AuditEvent | undefined> {
  await waitFor(() => published.some((e) => e.requestId === requestId), { description: `audit of ${requestId}` });
  const events = published.filter((e) => e.requestId === requestId);
  expect(events).toHaveLength(1);
  return events[0];
}

describe("admin roles", () => {
  let viewer: { id: string; secret: string };
  let red: { id: string; secret: string };
  let redKey: Json;
  let blueKey: Json;

  beforeAll(async () => {
    viewer = await createAdmin("auditor", "viewer");
    red = await createAdmin("red-lead", "admin", "red");
    redKey = (await call(ROOT, "POST", "/admin/keys", { name: "red-app", team: "red" })).body;
    blueKey = (await call(ROOT, "POST", "/admin/keys", { name: "blue-app", team: "blue" })).body;
  });

  it("shows an admin secret once and never again", async () => {
    const listed = await call(ROOT, "GET", "/admin/admins");
    expect(listed.status).toBe(200);
    expect(listed.body.data.map((a: Json) => a.id)).toEqual(expect.arrayContaining([viewer.id, red.id]));
    expect(listed.text).not.toContain(viewer.secret);
    expect(listed.text).not.toMatch(/hash/);
  });

  it("lets a viewer read but not change anything", async () => {
    expect((await call(viewer.secret, "GET", "/admin/keys")).status).toBe(200);
    expect((await call(viewer.secret, "GET", `/admin/keys/${blueKey.id}`)).status).toBe(200);
    const denied = [
      await call(viewer.secret, "POST", "/admin/keys", { name: "nope" }),
      await call(viewer.secret, "DELETE", `/admin/keys/${blueKey.id}`),
      await call(viewer.secret, "PUT", "/admin/budgets", { scope: "team", id: "red", period: "day", limitUsd: 1 }),
      await call(viewer.secret, "POST", "/admin/admins", { name: "x", role: "admin" }),
    ];
    for (const res of denied) {
      expect(res.status).toBe(403);
      expect(res.body.error.code).toBe("insufficient_role");
    }
    expect((await call(ROOT, "GET", `/admin/keys/${blueKey.id}`)).status).toBe(200);
  });

  it("keeps a team-scoped admin inside its team", async () => {
    const listed = await call(red.secret, "GET", "/admin/keys");
    expect(listed.body.data.map((k: Json) => k.team)).not.toContain("blue");
    expect(listed.body.data.map((k: Json) => k.id)).toContain(redKey.id);

    const created = await call(red.secret, "POST", "/admin/keys", { name: "red-default" });
    expect(created.status).toBe(201);
    expect(created.body.team).toBe("red");

    const refused = [
      await call(red.secret, "POST", "/admin/keys", { name: "x", team: "blue" }),
      await call(red.secret, "GET", `/admin/keys/${blueKey.id}`),
      await call(red.secret, "DELETE", `/admin/keys/${blueKey.id}`),
      await call(red.secret, "PUT", "/admin/budgets", { scope: "team", id: "blue", period: "day", limitUsd: 1 }),
      await call(red.secret, "PUT", "/admin/budgets", { scope: "key", id: blueKey.id, period: "day", limitUsd: 1 }),
      await call(red.secret, "PUT", "/admin/budgets", { scope: "user", id: "ada", period: "day", limitUsd: 1 }),
      await call(red.secret, "GET", "/admin/budgets?scope=team&id=blue&period=day"),
      await call(red.secret, "GET", "/admin/usage?team=blue"),
      await call(red.secret, "GET", "/admin/admins"),
      await call(red.secret, "POST", "/admin/admins", { name: "x", role: "admin", team: "red" }),
    ];
    expect(refused.map((r) => r.status)).toEqual(refused.map(() => 403));
    expect((await call(ROOT, "GET", `/admin/keys/${blueKey.id}`)).status).toBe(200);

    const own = await call(red.secret, "PUT", "/admin/budgets", {
      scope: "key",
      id: redKey.id,
      period: "month",
      limitUsd: 5,
    });
    expect(own.status).toBe(200);
    expect((await call(red.secret, "GET", "/admin/usage?team=red")).status).toBe(200);
    // None of the refused requests left an audit event.
    for (const r of refused) expect(published.some((e) => e.requestId === r.requestId)).toBe(false);
  });

  it("stops a revoked admin credential", async () => {
    const temp = await createAdmin("temp", "admin");
    expect((await call(temp.secret, "GET", "/admin/keys")).status).toBe(200);
    expect((await call(ROOT, "DELETE", `/admin/admins/${temp.id}`)).status).toBe(200);
    await waitFor(async () => (await call(temp.secret, "GET", "/admin/keys")).status === 403, {
      description: "the revoked credential refused",
    });
  });
});

describe("the audit trail", () => {
  it("publishes exactly one event per change, with the actor and without secrets", async () => {
    const lead = await createAdmin("audit-lead", "admin", "green");
    const key = await call(lead.secret, "POST", "/admin/keys", { name: "green-app", rpm: 7 });
    const budget = await call(lead.secret, "PUT", "/admin/budgets", {
      scope: "team",
      id: "green",
      period: "day",
      limitUsd: 12.5,
      hard: true,
    });
    const revoke = await call(lead.secret, "DELETE", `/admin/keys/${key.body.id}`);
    expect([key.status, budget.status, revoke.status]).toEqual([201, 200, 200]);

    const actor = { credentialId: expect.any(String), name: "audit-lead", role: "admin", team: "green" };
    const created = await onlyAuditOf(key.requestId);
    expect(created).toMatchObject({
      action: "key.create",
      targetType: "key",
      targetId: key.body.id,
      team: "green",
      actor,
      summary: { name: "green-app", team: "green", rpm: "7" },
    });
    expect(created?.actor?.credentialId).toMatch(/^adm_/);
    expect(JSON.stringify(created)).not.toContain(key.body.key);
    const set = await onlyAuditOf(budget.requestId);
    expect(set).toMatchObject({
      action: "budget.set",
      targetId: "team:green:day",
      team: "green",
      summary: { limit_usd: "12.5", hard: "true" },
    });
    const revoked = await onlyAuditOf(revoke.requestId);
    expect(revoked).toMatchObject({ action: "key.revoke", targetId: key.body.id, actor });

    // Admin credentials are audited too, with root as the actor and without the secret.
    const adminCreate = published.find((e) => e.action === "admin.create" && e.targetId.length > 0);
    expect(adminCreate?.actor).toMatchObject({ credentialId: "root", role: "admin" });
    expect(JSON.stringify(published)).not.toContain(lead.secret);
  });

  it("lists changes newest first with actor, action and time filters, scoped to the reader's team", async () => {
    const lead = await createAdmin("lister", "admin", "violet");
    // "Since" just after the admin's own creation event, by the event's own clock (not the test's).
    const created = await call(ROOT, "GET", "/admin/audit?action=admin.create");
    const createdAt = (created.body.data as Json[]).find((e) => (e.target as Json).id === lead.id)?.time as string;
    const since = new Date(Date.parse(createdAt) + 1).toISOString();
    const first = await call(lead.secret, "POST", "/admin/keys", { name: "v1" });
    const second = await call(lead.secret, "POST", "/admin/keys", { name: "v2" });
    await call(ROOT, "POST", "/admin/keys", { name: "elsewhere", team: "orange" });

    const mine = await call(ROOT, "GET", `/admin/audit?actor=${lead.id}`);
    expect(mine.status).toBe(200);
    expect(mine.body.data.map((e: Json) => e.request_id)).toEqual([second.requestId, first.requestId]);
    expect(mine.body.data[0]).toMatchObject({
      action: "key.create",
      actor: { id: lead.id, role: "admin", team: "violet" },
      target: { type: "key" },
      team: "violet",
    });

    const creates = await call(ROOT, "GET", `/admin/audit?action=admin.create&since=${encodeURIComponent(since)}`);
    expect(creates.body.data).toEqual([]);
    const limited = await call(ROOT, "GET", "/admin/audit?limit=1");
    expect(limited.body.data).toHaveLength(1);
    expect(limited.body.truncated).toBe(true);

    // The violet admin sees violet's changes only; the viewer-style read is allowed for any role.
    const scoped = await call(lead.secret, "GET", "/admin/audit");
    expect(scoped.body.data.length).toBeGreaterThanOrEqual(2);
    expect(new Set(scoped.body.data.map((e: Json) => e.team))).toEqual(new Set(["violet"]));

    const bad = await call(ROOT, "GET", "/admin/audit?since=yesterday");
    expect(bad.status).toBe(400);
  });
});
