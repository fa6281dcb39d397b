import { waitFor } from "@tokenmesh/testing";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { ADMIN_KEY, createKey, type Mesh, startMesh } from "./mesh.js";

let mesh: Mesh;

beforeAll(async () => {
  // The cost service's keys under a Redis Cluster hash tag, as the README recommends: the gateway must not care.
  mesh = await startMesh({
    natsUrl: inject("natsUrl"),
    redisUrl: inject("redisUrl"),
    gateways: 3,
    env: { COST_REDIS_PREFIX: `{cost-${Date.now()}}:` },
  });
});

afterAll(async () => {
  await mesh?.stop();
});

const chat = (gateway: string, key: string, content: string, extra: Record<string, unknown> = {}) =>
  fetch(`${gateway}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ model: "gpt-fake", messages: [{ role: "user", content }], ...extra }),
  });

const usageOf = async (gateway: string, id: string) =>
  (await (await admin(gateway, "GET", `/admin/usage?keyId=${id}&period=month`)).json()) as {
    costUsd: number;
    requests: number;
  };

const admin = (gateway: string, method: string, path: string, body?: unknown) =>
  fetch(`${gateway}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_KEY}`, "content-type": "application/json" },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });

describe("three gateway replicas", () => {
  it("hold a key to exactly 60 requests per minute out of 200 concurrent", async () => {
    const { key } = await createKey(mesh.gateways[0]!.http, { name: "rpm-60", rpm: 60 });
    const responses = await Promise.all(
      Array.from({ length: 200 }, (_, i) => chat(mesh.gateways[i % 3]!.http, key, `request ${i}`)),
    );
    const statuses = responses.map((r) => r.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(60);
    expect(statuses.filter((s) => s === 429)).toHaveLength(140);
    const limited = responses.find((r) => r.status === 429)!;
    expect(Number(limited.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(((await limited.json()) as { error: { code: string } }).error.code).toBe("rate_limit_exceeded");
  });

  it("never overspend a hard budget, and admit as many requests as it allows", async () => {
    const { id, key } = await createKey(mesh.gateways[0]!.http, { name: "hard-budget", team: "budgeted" });
    const set = await admin(mesh.gateways[1]!.http, "PUT", "/admin/budgets", {
      scope: "key",
      id,
      period: "month",
      limitUsd: 1,
      hard: true,
    });
    expect(set.status).toBe(200);
    // No wait: once PUT has answered, every replica enforces the budget.
    // "priced" costs $1,000 per million tokens: 5 input words + 5 output words (the fake counts words) = $0.01,
    // and its worst case (a bound of the input: its UTF-8 bytes and overhead, + max_tokens) is held by Reserve
    // until usage settles it.
    const prompt = "one two three four five";
    const send = (i: number) => chat(mesh.gateways[i % 3]!.http, key, prompt, { model: "priced", max_tokens: 5 });
    const burst = await Promise.all(Array.from({ length: 300 }, (_, i) => send(i)));
    let ok = burst.filter((r) => r.status === 200).length;
    const refused = burst.filter((r) => r.status === 429);
    expect(ok + refused.length).toBe(300);
    // Each hold is $0.044 (see below): about 22 fit at once in $1, more as earlier answers settle.
    expect(ok).toBeGreaterThan(15);
    for (const r of refused.slice(0, 3)) {
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe("insufficient_quota");
    }
    // Then one at a time until the budget refuses: successes reach what $1.00 allows.
    let sent = 300;
    for (let i = 0; i < 100; i++) {
      // Each request's usage must settle its hold before the next can use the freed headroom.
      const recorded = sent;
      await waitFor(async () => (await usageOf(mesh.gateways[2]!.http, id)).requests >= recorded, {
        timeoutMs: 10_000,
        description: "the previous request in the ledger",
      });
      const r = await send(i);
      sent++;
      if (r.status !== 200) {
        expect(r.status).toBe(429);
        break;
      }
      ok++;
    }
    const usage = await waitFor(
      async () => {
        const u = await usageOf(mesh.gateways[2]!.http, id);
        return u.requests >= sent ? u : undefined;
      },
      { timeoutMs: 10_000, description: "every request in the ledger" },
    );
    expect(usage.requests).toBe(sent);
    expect(usage.costUsd).toBeLessThanOrEqual(1.0);
    // $0.01 each: once spend is within one worst-case hold of $1.00 nothing more fits. The hold is
    // (8 + 8 + 23 bytes of prompt + 5 output) tokens × $0.001 = $0.044, so at least 95 fit.
    expect(ok).toBeGreaterThanOrEqual(95);
    expect(usage.costUsd).toBeCloseTo(ok * 0.01, 6);
    const budget = (await (
      await admin(mesh.gateways[0]!.http, "GET", `/admin/budgets?scope=key&id=${id}&period=month`)
    ).json()) as {
      spentUsd: number;
      heldUsd: number;
    };
    expect(budget.heldUsd).toBe(0);
    expect(budget.spentUsd).toBeCloseTo(usage.costUsd, 9);
  });

  /** A key with a hard monthly budget, set through one replica and in force on all at once. */
  const hardKey = async (name: string, limitUsd: number) => {
    const k = await createKey(mesh.gateways[0]!.http, { name });
    const set = await admin(mesh.gateways[2]!.http, "PUT", "/admin/budgets", {
      scope: "key",
      id: k.id,
      period: "month",
      limitUsd,
      hard: true,
    });
    expect(set.status).toBe(200);
    return k;
  };
  const settled = async (id: string, requests: number) => {
    const usage = await waitFor(
      async () => {
        const u = await usageOf(mesh.gateways[0]!.http, id);
        return u.requests >= requests ? u : undefined;
      },
      { timeoutMs: 10_000, description: `${requests} requests in the ledger` },
    );
    expect(usage.requests).toBe(requests);
    return usage;
  };

  it("hold auto at the priciest model of its tier, and a fallback chain at its priciest model", async () => {
    // Worst cases on "priced" are ~$0.04; "gpt-fake" (which auto:premium picks first, and which answers) costs
    // micro-dollars. Held at gpt-fake's price (or at "auto"'s, $0) these would be admitted.
    const { key } = await hardKey("auto-hard", 0.02);
    const viaAuto = await chat(mesh.gateways[0]!.http, key, "one two three", { model: "auto:premium", max_tokens: 5 });
    expect(viaAuto.status).toBe(429);
    expect(((await viaAuto.json()) as { error: { code: string } }).error.code).toBe("insufficient_quota");
    const viaFallback = await chat(mesh.gateways[1]!.http, key, "one two three", {
      model: "flaky-to-priced",
      max_tokens: 5,
    });
    expect(viaFallback.status).toBe(429);
    // With room for it, the fallback answers from "priced" and the ledger stays within the budget.
    const roomy = await hardKey("fallback-hard", 0.5);
    const burst = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        chat(mesh.gateways[i % 3]!.http, roomy.key, "one two three four five", {
          model: "flaky-to-priced",
          max_tokens: 5,
        }),
      ),
    );
    const ok = burst.filter((r) => r.status === 200).length;
    expect(ok).toBeGreaterThan(5);
    const usage = await settled(roomy.id, 60);
    expect(usage.costUsd).toBeLessThanOrEqual(0.5);
  });

  it("never overspend on embeddings or on Chinese prompts, from three replicas at once", async () => {
    // 300 CJK characters: the fake (like real tokenizers) counts each as a token, $0.30 a request on "priced";
    // an estimate of characters / 4 would hold a quarter of that and let a burst overspend.
    const zh = "请用三句话解释量子纠缠并给出一个日常生活中的类比".repeat(12).slice(0, 300);
    const chinese = await hardKey("zh-hard", 2);
    const zhBurst = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        chat(mesh.gateways[i % 3]!.http, chinese.key, zh, { model: "priced", max_tokens: 5 }),
      ),
    );
    const zhOk = zhBurst.filter((r) => r.status === 200).length;
    expect(zhOk).toBeGreaterThan(0);
    expect((await settled(chinese.id, 30)).costUsd).toBeLessThanOrEqual(2);

    // Embeddings: 100 words at $1,000 per million = $0.10 a request.
    const embedKey = await hardKey("embed-hard", 0.5);
    const text = Array.from({ length: 100 }, (_, i) => `w${i}`).join(" ");
    const embedBurst = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        fetch(`${mesh.gateways[i % 3]!.http}/v1/embeddings`, {
          method: "POST",
          headers: { authorization: `Bearer ${embedKey.key}`, "content-type": "application/json" },
          body: JSON.stringify({ model: "embed-priced", input: text }),
        }),
      ),
    );
    const embedOk = embedBurst.filter((r) => r.status === 200).length;
    expect(embedOk).toBeGreaterThan(0);
    expect(embedBurst.filter((r) => r.status === 429).length).toBe(30 - embedOk);
    expect((await settled(embedKey.id, 30)).costUsd).toBeLessThanOrEqual(0.5);
  });

  it("refuse a key whose soft budget reached 100 % on every replica, until the budget is raised", async () => {
    const { id, key } = await createKey(mesh.gateways[0]!.http, { name: "soft-budget" });
    const budget = { scope: "key", id, period: "day", limitUsd: 0.03, hard: false };
    expect((await admin(mesh.gateways[0]!.http, "PUT", "/admin/budgets", budget)).status).toBe(200);
    const send = (i: number) =>
      chat(mesh.gateways[i % 3]!.http, key, "one two three four five", { model: "priced", max_tokens: 5 });
    // $0.01 each: the third request reaches 100 %; soft budgets do not hold requests back, they alert and then block.
    for (let i = 0; i < 3; i++) expect((await send(i)).status).toBe(200);
    const everyReplica = (status: number) => async () =>
      (await Promise.all([0, 1, 2].map((i) => send(i).then((r) => r.status)))).every((st) => st === status);
    await waitFor(everyReplica(429), { timeoutMs: 5_000, intervalMs: 100, description: "blocked on every replica" });
    const refused = await send(0);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("insufficient_quota");
    // Raised through one replica: every replica lets the key through again within a couple of seconds.
    expect((await admin(mesh.gateways[1]!.http, "PUT", "/admin/budgets", { ...budget, limitUsd: 10 })).status).toBe(
      200,
    );
    await waitFor(everyReplica(200), { timeoutMs: 4_000, intervalMs: 100, description: "open on every replica" });
  });
});
