import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AppError, toHttpError } from "@tokenmesh/runtime";
import { freePort } from "@tokenmesh/testing";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { requireBuiltCli, runCli } from "./cli-process.js";

const ADMIN_KEY = "sk-admin-test";

interface Received {
  method: string;
  path: string;
  query: Record<string, string>;
  authorization: string | undefined;
  contentType: string | undefined;
  body: unknown;
}

const keyA = {
  id: "k_aaa",
  name: "demo",
  team: "research",
  user: "",
  models: [],
  rpm: 60,
  tpm: 20000,
  created_at: "2025-01-02T03:04:05.000Z",
};
const keyB = { ...keyA, id: "k_bbb", name: "bot", team: "", user: "ann", models: ["local-tiny"], rpm: 0, tpm: 0 };

const totals = (costUsd: number, requests: number, errors = 0) => ({
  costUsd,
  requests,
  inputTokens: requests * 100,
  outputTokens: requests * 10,
  cachedTokens: requests,
  errors,
});

/**
 * A stand-in for the gateway's admin API: records every request and answers like the gateway, errors included
 * (the OpenAI error body from the runtime's own mapping).
 */
function fakeAdminApi() {
  const received: Received[] = [];
  const fail = (res: ServerResponse, err: AppError) => {
    const mapped = toHttpError(err, "req_fake_1");
    res.writeHead(mapped.status, { "content-type": "application/json", "x-request-id": "req_fake_1" });
    res.end(JSON.stringify(mapped.body));
  };
  const ok = (res: ServerResponse, body: unknown, status = 200) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  };
  const handle = (req: IncomingMessage, res: ServerResponse, raw: string) => {
    const url = new URL(req.url ?? "/", "http://fake");
    const body = raw === "" ? undefined : JSON.parse(raw);
    received.push({
      method: req.method ?? "",
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      authorization: req.headers.authorization,
      contentType: req.headers["content-type"],
      body,
    });
    if (req.headers.authorization !== `Bearer ${ADMIN_KEY}`) {
      return fail(
        res,
        new AppError("PERMISSION_DENIED", "This key is not the admin key", { reason: "invalid_api_key" }),
      );
    }
    const route = `${req.method} ${url.pathname}`;
    if (route === "POST /admin/keys") {
      const b = body as { name?: string };
      if (!b?.name) return fail(res, new AppError("INVALID_ARGUMENT", "name is required", { param: "name" }));
      return ok(
        res,
        { ...keyA, team: "", rpm: 0, tpm: 0, ...b, id: "k_new", created_at: keyA.created_at, key: "sk-tm-secret-once" },
        201,
      );
    }
    if (route === "GET /admin/keys") return ok(res, { data: [keyA, keyB] });
    if (route === "DELETE /admin/keys/k_aaa") return ok(res, { id: "k_aaa", deleted: true });
    if (route === "DELETE /admin/keys/behind-proxy") {
      res.writeHead(502, { "content-type": "text/html" });
      return res.end("<html>upstream connect error</html>");
    }
    if (route.startsWith("DELETE /admin/keys/"))
      return fail(res, new AppError("NOT_FOUND", `No key ${decodeURIComponent(url.pathname.slice(12))}`));
    if (route === "PUT /admin/budgets") return ok(res, { thresholds: [0.5, 0.8, 1], ...(body as object) });
    if (route === "GET /admin/budgets") {
      if (url.searchParams.get("id") === "nobody") return ok(res, { budget: null, spentUsd: 0.25, heldUsd: 0 });
      return ok(res, {
        budget: {
          scope: "team",
          id: "research",
          period: "month",
          limitUsd: 12.5,
          hard: true,
          thresholds: [0.5, 0.8, 1],
        },
        spentUsd: 5,
        heldUsd: 0.25,
      });
    }
    if (route === "GET /admin/usage") {
      return ok(res, {
        ...totals(1.75, 30, 2),
        byModel: { "local-tiny": totals(0, 20), "gpt-4o-mini": totals(1.75, 10, 2) },
      });
    }
    fail(res, new AppError("NOT_FOUND", `Unknown path ${route}`));
  };
  const server: Server = createServer((req, res) => {
    let raw = "";
    req.setEncoding("utf8");
    req.on("data", (c: string) => {
      raw += c;
    });
    req.on("end", () => handle(req, res, raw));
  });
  return { server, received };
}

describe("tokenmesh admin commands", () => {
  const fake = fakeAdminApi();
  let env: Record<string, string>;
  let tmp: string;

  beforeAll(async () => {
    requireBuiltCli();
    await new Promise<void>((resolve) => fake.server.listen(0, "127.0.0.1", resolve));
    const { port } = fake.server.address() as AddressInfo;
    env = { TOKENMESH_URL: `http://127.0.0.1:${port}`, TOKENMESH_ADMIN_KEY: ADMIN_KEY };
    tmp = mkdtempSync(join(tmpdir(), "tokenmesh-cli-admin-"));
  });
  afterAll(async () => {
    await new Promise((resolve) => fake.server.close(resolve));
    rmSync(tmp, { recursive: true, force: true });
  });
  beforeEach(() => {
    fake.received.length = 0;
  });

  it("creates a key: sends the body with the admin key and shows the secret once, with a warning", async () => {
    const r = await runCli(
      ["keys", "create", "--name", "demo", "--team", "research", "--models", "tiny,gpt-4o-mini", "--rpm", "60"],
      { env },
    );
    expect(r.code).toBe(0);
    expect(fake.received).toEqual([
      {
        method: "POST",
        path: "/admin/keys",
        query: {},
        authorization: `Bearer ${ADMIN_KEY}`,
        contentType: "application/json",
        body: { name: "demo", team: "research", models: ["tiny", "gpt-4o-mini"], rpm: 60 },
      },
    ]);
    expect(r.stdout).toContain("Created key k_new (demo)");
    expect(r.stdout).toContain("sk-tm-secret-once");
    expect(r.stdout).toMatch(/not shown again/);
    expect(r.stderr).toBe("");
  });

  it("prints the gateway's raw answer with --json", async () => {
    const r = await runCli(["keys", "create", "--name", "demo", "--json"], { env });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ id: "k_new", name: "demo", key: "sk-tm-secret-once" });
  });

  it("lists keys as a table", async () => {
    const r = await runCli(["keys", "list"], { env });
    expect(r.code).toBe(0);
    expect(fake.received.map((q) => `${q.method} ${q.path}`)).toEqual(["GET /admin/keys"]);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^ID\s+NAME\s+TEAM\s+USER\s+MODELS\s+RPM\s+TPM/);
    expect(lines[1]).toMatch(/^k_aaa\s+demo\s+research\s+-\s+all\s+60\s+20,000\s+2025-01-02 03:04$/);
    expect(lines[2]).toMatch(/^k_bbb\s+bot\s+-\s+ann\s+local-tiny\s+-\s+-/);
  });

  it("revokes a key", async () => {
    const r = await runCli(["keys", "revoke", "k_aaa"], { env });
    expect(r.code).toBe(0);
    expect(fake.received.map((q) => `${q.method} ${q.path}`)).toEqual(["DELETE /admin/keys/k_aaa"]);
    expect(r.stdout).toBe("Revoked key k_aaa\n");
  });

  it("prints the error body's message and exits 1 when the gateway refuses", async () => {
    const r = await runCli(["keys", "revoke", "k_missing"], { env });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toBe("tokenmesh: No key k_missing (HTTP 404, not_found, request req_fake_1)\n");
  });

  it("reports a non-JSON error answer (a proxy in front of the gateway) by status", async () => {
    const r = await runCli(["keys", "revoke", "behind-proxy"], { env });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^tokenmesh: HTTP 502 Bad Gateway: <html>upstream connect error<\/html> \(HTTP 502\)/);
  });

  it("exits 1 with the gateway's message when the admin key is wrong", async () => {
    const r = await runCli(["keys", "list"], { env: { ...env, TOKENMESH_ADMIN_KEY: "sk-wrong" } });
    expect(r.code).toBe(1);
    expect(fake.received[0]?.authorization).toBe("Bearer sk-wrong");
    expect(r.stderr).toMatch(/^tokenmesh: This key is not the admin key \(HTTP 403, invalid_api_key/);
  });

  it("reads the admin key from .tokenmesh/admin-key in a parent directory", async () => {
    mkdirSync(join(tmp, ".tokenmesh"), { recursive: true });
    writeFileSync(join(tmp, ".tokenmesh", "admin-key"), `${ADMIN_KEY}\n`);
    const nested = join(tmp, "deep", "er");
    mkdirSync(nested, { recursive: true });
    const r = await runCli(["keys", "list"], { env: { TOKENMESH_URL: env.TOKENMESH_URL! }, cwd: nested });
    expect(r.code).toBe(0);
    expect(fake.received[0]?.authorization).toBe(`Bearer ${ADMIN_KEY}`);
  });

  it("says where to find the admin key when there is none", async () => {
    const empty = mkdtempSync(join(tmpdir(), "tokenmesh-cli-nokey-"));
    try {
      const r = await runCli(["keys", "list"], { env: { TOKENMESH_URL: env.TOKENMESH_URL! }, cwd: empty });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/no admin key: set TOKENMESH_ADMIN_KEY/);
      expect(fake.received).toEqual([]);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it("prefers --url over TOKENMESH_URL, and exits 1 when the gateway cannot be reached", async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const viaFlag = await runCli(["keys", "list", "--url", env.TOKENMESH_URL!], {
      env: { ...env, TOKENMESH_URL: dead },
    });
    expect(viaFlag.code).toBe(0);
    const unreachable = await runCli(["keys", "list"], { env: { ...env, TOKENMESH_URL: dead } });
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toBe(`tokenmesh: cannot reach the gateway at ${dead}: ECONNREFUSED\n`);
  });

  it("sets a budget", async () => {
    const r = await runCli(
      ["budgets", "set", "--scope", "team", "--id", "research", "--period", "month", "--limit-usd", "12.5", "--hard"],
      { env },
    );
    expect(r.code).toBe(0);
    expect(fake.received).toMatchObject([
      {
        method: "PUT",
        path: "/admin/budgets",
        authorization: `Bearer ${ADMIN_KEY}`,
        body: { scope: "team", id: "research", period: "month", limitUsd: 12.5, hard: true },
      },
    ]);
    expect(r.stdout).toBe(
      "Budget set for team research, per month: $12.50 (hard: requests that would exceed it are refused), alerts at 50%, 80%, 100%\n",
    );
  });

  it("shows a budget and its spending, or that there is none", async () => {
    const r = await runCli(["budgets", "get", "--scope", "team", "--id", "research", "--period", "month"], { env });
    expect(r.code).toBe(0);
    expect(fake.received[0]).toMatchObject({
      method: "GET",
      path: "/admin/budgets",
      query: { scope: "team", id: "research", period: "month" },
    });
    expect(r.stdout).toContain("Budget for team research, per month: $12.50 (hard");
    expect(r.stdout).toContain(
      "Spent this month: $5.00 (plus $0.25 held for requests in flight); $7.25 left, 40% used",
    );

    const none = await runCli(["budgets", "get", "--scope", "user", "--id", "nobody", "--period", "day"], { env });
    expect(none.code).toBe(0);
    expect(none.stdout).toBe("No day budget for user nobody.\nSpent today: $0.25\n");

    const json = await runCli(["budgets", "get", "--scope", "user", "--id", "nobody", "--period", "day", "--json"], {
      env,
    });
    expect(JSON.parse(json.stdout)).toEqual({ budget: null, spentUsd: 0.25, heldUsd: 0 });
  });

  it("reports usage by model with a total, asking for the right scope and period", async () => {
    const r = await runCli(["usage", "report", "--team", "research", "--period", "day"], { env });
    expect(r.code).toBe(0);
    expect(fake.received[0]).toMatchObject({
      method: "GET",
      path: "/admin/usage",
      query: { team: "research", period: "day" },
    });
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines[0]).toBe("Usage of team research today (UTC)");
    expect(lines[2]).toMatch(/^MODEL\s+REQUESTS\s+ERRORS\s+INPUT TOKENS\s+OUTPUT TOKENS\s+CACHED TOKENS\s+COST$/);
    expect(lines[3]).toMatch(/^gpt-4o-mini\s+10\s+2\s+1,000\s+100\s+10\s+\$1\.75$/);
    expect(lines[4]).toMatch(/^local-tiny\s+20\s+0\s+2,000\s+200\s+20\s+\$0\.00$/);
    expect(lines[6]).toMatch(/^TOTAL\s+30\s+2\s+3,000\s+300\s+30\s+\$1\.75$/);

    await runCli(["usage", "report", "--key", "k_aaa"], { env });
    expect(fake.received[1]?.query).toEqual({ keyId: "k_aaa", period: "month" });
    await runCli(["usage", "report", "--model", "tiny", "--start", "2025-01-01", "--end", "2025-01-31"], { env });
    expect(fake.received[2]?.query).toEqual({ model: "tiny", period: "month", start: "2025-01-01", end: "2025-01-31" });
  });

  it("exits 2 with help and sends nothing when the command line is wrong", async () => {
    const r = await runCli(["budgets", "set", "--scope", "team", "--id", "x", "--period", "year", "--limit-usd", "1"], {
      env,
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /^tokenmesh: --period must be day or month \(got "year"\)\n\nUsage: tokenmesh budgets set/,
    );
    const none = await runCli([], { env });
    expect(none.code).toBe(2);
    expect(none.stderr).toContain("Commands:");
    expect(fake.received).toEqual([]);
  });

  it("lists every command with --help and exits 0", async () => {
    const r = await runCli(["--help"], { env });
    expect(r.code).toBe(0);
    for (const c of [
      "usage tail",
      "usage report",
      "keys create",
      "keys list",
      "keys revoke",
      "budgets set",
      "budgets get",
    ]) {
      expect(r.stdout).toContain(c);
    }
  });
});
