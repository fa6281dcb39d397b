import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { waitFor } from "@tokenmesh/testing";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { ADMIN_KEY, createKey, type Mesh, startMesh } from "./mesh.js";

// Async jobs across the whole mesh, with two gateway replicas sharing the LLM_JOBS work queue. Leases are short so
// a job whose worker is killed is taken over within seconds.

// biome-ignore lint/suspicious/noExplicitAny: JSON bodies of the API under test, read field by field.
type Json = Record<string, any>;

let mesh: Mesh;
let gw0: string;
let gw1: string;

beforeAll(async () => {
  mesh = await startMesh({
    natsUrl: inject("natsUrl"),
    redisUrl: inject("redisUrl"),
    gateways: 2,
    env: { GATEWAY_JOB_LEASE_MS: "3000" },
  });
  gw0 = mesh.gateways[0]!.http;
  gw1 = mesh.gateways[1]!.http;
});

afterAll(async () => {
  await mesh?.stop();
});

const WORDS =
  "apple beach cloud delta eagle frost grape house ivory jelly knife lemon mango noble ocean piano queen river stone tiger";
/** `n` short words: "gpt-slow" echoes them one per chunk, 40 ms apart, and counts each as a token. */
const prompt = (n: number) => Array.from({ length: n }, (_, i) => WORDS.split(" ")[i % 20]).join(" ");

async function api(gateway: string, key: string, method: string, path: string, body?: unknown) {
  const res = await fetch(`${gateway}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Json };
}

function finished(gateway: string, key: string, id: string, timeoutMs = 30_000): Promise<Json> {
  return waitFor(
    async () => {
      const r = await api(gateway, key, "GET", `/v1/jobs/${id}`);
      return ["succeeded", "failed", "cancelled"].includes(r.body.status) ? r.body : undefined;
    },
    { timeoutMs, description: `job ${id} final` },
  );
}

const ledger = async (keyId: string) => {
  const res = await fetch(`${gw1}/admin/usage?keyId=${keyId}&period=month`, {
    headers: { authorization: `Bearer ${ADMIN_KEY}` },
  });
  return (await res.json()) as { requests: number; inputTokens: number; outputTokens: number };
};

describe("async jobs across the mesh", () => {
  it("answers a job submitted with the openai client with the body the sync endpoint returns", async () => {
    const k = await createKey(gw0, { name: "jobs-sync-equal" });
    const client = new OpenAI({ baseURL: `${gw0}/v1`, apiKey: k.key, maxRetries: 0 });
    const request = { model: "gpt-fake", messages: [{ role: "user" as const, content: "same answer either way" }] };
    const sync = await client.chat.completions.create(request);
    const job = await client.post<Json>("/jobs", { body: { endpoint: "/v1/chat/completions", request } });
    expect(job.status).toBe("queued");
    // Read back from the other replica: jobs live in the shared store.
    const done = await finished(gw1, k.key, job.id);
    expect(done.status).toBe("succeeded");
    const { id: _a, created: _b, ...jobBody } = done.result;
    const { id: _c, created: _d, ...syncBody } = sync as unknown as Json;
    expect(jobBody).toEqual(syncBody);
  });

  it("survives kill -9 of its worker, the gateway that accepted it, and is billed once", async () => {
    const k = await createKey(gw0, { name: "jobs-kill" });
    const text = prompt(60);
    // Only gateway-0 runs jobs while the job starts: it accepts it and its worker takes it. The model takes its time
    // to answer, so the job is mid-flight when its gateway dies.
    await mesh.kill("gateway-1");
    mesh.fakeOpenAI.setBehavior({ firstByteDelayMs: 1_500 });
    try {
      const sub = await api(gw0, k.key, "POST", "/v1/jobs", {
        request: { model: "gpt-fake", messages: [{ role: "user", content: text }] },
      });
      expect(sub.status).toBe(202);
      const upstreamCalls = () =>
        mesh.fakeOpenAI.requests.filter((r) =>
          JSON.stringify((r.body as { messages?: unknown } | undefined)?.messages ?? "").includes(text),
        ).length;
      await waitFor(() => upstreamCalls() === 1, { description: "the job's request reached the model" });
      expect((await api(gw0, k.key, "GET", `/v1/jobs/${sub.body.id}`)).body.status).toBe("running");
      // Mid-answer: the worker and the accepting gateway die together; the other replica takes the job over.
      await mesh.kill("gateway-0");
      mesh.fakeOpenAI.setBehavior();
      await mesh.restart("gateway-1");
      const done = await finished(gw1, k.key, sub.body.id);
      expect(done.status).toBe("succeeded");
      expect(done.result.choices[0].message.content).toBe(text);
      // The re-run asked the model again, or got the first run's answer from the router's exact cache (the router
      // reads an abandoned answer to its end); either way the key pays for one request.
      expect(upstreamCalls()).toBeGreaterThanOrEqual(1);
      const billed = await waitFor(
        async () => {
          const t = await ledger(k.id);
          return t.requests >= 1 && t.outputTokens >= 60 ? t : undefined;
        },
        { timeoutMs: 20_000, description: "the job in the ledger" },
      );
      expect(billed.requests).toBe(1);
      expect(billed.outputTokens).toBe(60);
      expect(billed.inputTokens).toBeGreaterThan(0);
    } finally {
      mesh.fakeOpenAI.setBehavior();
      if (
        !(await fetch(`${gw0}/healthz`)
          .then((r) => r.ok)
          .catch(() => false))
      )
        await mesh.restart("gateway-0");
      if (
        !(await fetch(`${gw1}/healthz`)
          .then((r) => r.ok)
          .catch(() => false))
      )
        await mesh.restart("gateway-1");
    }
  });

  it("keeps one tenant out of another's jobs on every replica", async () => {
    const a = await createKey(gw0, { name: "jobs-tenant-a", team: "a" });
    const b = await createKey(gw0, { name: "jobs-tenant-b", team: "b" });
    const sub = await api(gw0, a.key, "POST", "/v1/jobs", {
      request: { model: "gpt-fake", messages: [{ role: "user", content: "private" }] },
      metadata: { owner: "a" },
    });
    for (const gw of [gw0, gw1]) {
      expect((await api(gw, b.key, "GET", `/v1/jobs/${sub.body.id}`)).status).toBe(404);
      expect((await api(gw, b.key, "DELETE", `/v1/jobs/${sub.body.id}`)).status).toBe(404);
      expect((await api(gw, b.key, "GET", "/v1/jobs")).body.data).toEqual([]);
    }
    const done = await finished(gw1, a.key, sub.body.id);
    expect(done).toMatchObject({ status: "succeeded", metadata: { owner: "a" } });
  });

  it("runs a job from the CLI with --wait and prints its result", async () => {
    const k = await createKey(gw0, { name: "jobs-cli" });
    const cli = fileURLToPath(new URL("../../packages/cli/dist/main.js", import.meta.url));
    const run = (args: string[]) =>
      promisify(execFile)(process.execPath, [cli, ...args], {
        env: { ...process.env, TOKENMESH_URL: gw1, TOKENMESH_API_KEY: k.key },
      });
    const { stdout, stderr } = await run([
      "jobs",
      "submit",
      "--model",
      "gpt-fake",
      "--prompt",
      "from the cli",
      "--wait",
    ]);
    const result = JSON.parse(stdout) as Json;
    expect(result.choices[0].message.content).toBe("from the cli");
    expect(stderr).toMatch(/job_[0-9a-f]{24}\s+succeeded/);
    const listed = await run(["jobs", "list"]);
    expect(listed.stdout).toMatch(/^job_[0-9a-f]{24} {2}succeeded/m);
  });
});
