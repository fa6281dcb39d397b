import { DeliverPolicy, jetstream } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { decodeEvent, UsageRecordedEvent, UsageServedBatchEvent } from "@tokenmesh/events";
import type { UsageRecorded } from "@tokenmesh/proto/events/v1/events";
import { waitFor } from "@tokenmesh/testing";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createKey, type Mesh, startMesh } from "./mesh.js";

// Smart routing through the whole mesh with the official openai client: `auto` picks a tier by the request's
// complexity (the mesh catalog: small = [local-tiny], premium = [gpt-fake, priced], premium from score 0.5) and
// says why in x-tokenmesh-route-reason and on the usage event; speculative requests get the fast answer at once and
// the slow one as an upgrade only their key can fetch.

let mesh: Mesh;
let nc: NatsConnection;
let gateway: string;
let key: { id: string; key: string };
let client: OpenAI;
const recorded = new Map<string, UsageRecorded>();
const served = new Map<string, UsageRecorded>();

beforeAll(async () => {
  mesh = await startMesh({ natsUrl: inject("natsUrl"), redisUrl: inject("redisUrl") });
  gateway = mesh.gateways[0]!.http;
  nc = await connect({ servers: inject("natsUrl") });
  const consumer = await jetstream(nc).consumers.get("LLM_USAGE", { deliver_policy: DeliverPolicy.New });
  void (async () => {
    for await (const m of await consumer.consume()) {
      if (m.subject === UsageRecordedEvent.subject) {
        const e = decodeEvent(UsageRecordedEvent, m.data);
        recorded.set(e.requestId, e);
      } else if (m.subject === UsageServedBatchEvent.subject) {
        for (const e of decodeEvent(UsageServedBatchEvent, m.data).reports) served.set(e.requestId, e);
      }
    }
  })();
  key = await createKey(gateway, { name: "routing-e2e", team: "team-routing" });
  client = new OpenAI({ baseURL: `${gateway}/v1`, apiKey: key.key, maxRetries: 0 });
});

afterAll(async () => {
  await nc?.close();
  await mesh?.stop();
});

const LONG_CODE_QUESTION = [
  "Explain step by step why this TypeScript service leaks memory under load, then refactor it:",
  "```ts",
  ...Array.from(
    { length: 40 },
    (_, i) =>
      `export async function handler${i}(req: Request): Promise<Response> { const body = await req.json(); cache.set(body.id, body); return new Response(JSON.stringify(body)); }`,
  ),
  "```",
].join("\n");

describe("auto routing by complexity", () => {
  it("sends a short chat to the small tier, with the reason header and on the usage event", async () => {
    const { data, response } = await client.chat.completions
      .create({ model: "auto", messages: [{ role: "user", content: "Hi there!" }], max_tokens: 8 })
      .withResponse();
    expect(data.model).toBeDefined();
    const reason = response.headers.get("x-tokenmesh-route-reason");
    expect(reason).toBe("auto:small score=0.00 signals=none");
    const id = response.headers.get("x-request-id") ?? data.id;
    const event = await waitFor(() => recorded.get(id), { timeoutMs: 10_000, description: `usage ${id}` });
    expect(event.model).toBe("local-tiny");
    expect(event.routeReason).toBe(reason);
  });

  it("sends a long code question to the large tier's cheapest model that holds it", async () => {
    const { data, response } = await client.chat.completions
      .create({ model: "auto", messages: [{ role: "user", content: LONG_CODE_QUESTION }], max_tokens: 16 })
      .withResponse();
    const reason = response.headers.get("x-tokenmesh-route-reason") ?? "";
    expect(reason).toMatch(/^auto:premium score=(0\.[5-9]\d|1\.00) signals=.*code/);
    expect(reason).toContain("long");
    const event = await waitFor(() => recorded.get(data.id), { timeoutMs: 10_000, description: `usage ${data.id}` });
    expect(event.model).toBe("gpt-fake");
    expect(event.routeReason).toBe(reason);
  });

  it("streams with the reason header too, and follows x-tokenmesh-route: best", async () => {
    const { data: stream, response } = await client.chat.completions
      .create(
        { model: "auto", messages: [{ role: "user", content: "Hello" }], max_tokens: 8, stream: true },
        { headers: { "x-tokenmesh-route": "best" } },
      )
      .withResponse();
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
    expect(text.length).toBeGreaterThan(0);
    expect(response.headers.get("x-tokenmesh-route-reason")).toBe("auto:premium prefer=best");
  });

  it("explains an explicit model and an alias too", async () => {
    const { response } = await client.chat.completions
      .create({ model: "gpt", messages: [{ role: "user", content: "one two" }], max_tokens: 4 })
      .withResponse();
    expect(response.headers.get("x-tokenmesh-route-reason")).toBe("alias:gpt");
  });
});

describe("speculative fast-plus-slow", () => {
  it("answers with the fast model at once and serves the slow one as an upgrade to its key only", async () => {
    const { data, response } = await client.chat.completions
      .create(
        { model: "gpt-slow", messages: [{ role: "user", content: "alpha beta gamma delta" }], max_tokens: 16 },
        { headers: { "x-tokenmesh-speculative": "gpt-fake" } },
      )
      .withResponse();
    expect(data.choices[0]?.message.content).toBe("alpha beta gamma delta");
    expect(response.headers.get("x-tokenmesh-route-reason")).toBe("speculative:fast=gpt-fake slow=gpt-slow");
    const upgradeId = response.headers.get("x-tokenmesh-upgrade");
    expect(upgradeId).toBeTruthy();
    const fast = await waitFor(() => recorded.get(data.id), { timeoutMs: 10_000, description: "fast usage" });
    expect(fast.model).toBe("gpt-fake");

    const url = `${gateway}/v1/chat/completions/${upgradeId}/upgrade`;
    const upgrade = await waitFor(
      async () => {
        const res = await fetch(url, { headers: { authorization: `Bearer ${key.key}` } });
        return res.status === 200 ? ((await res.json()) as OpenAI.ChatCompletion) : undefined;
      },
      { timeoutMs: 15_000, description: "the upgrade" },
    );
    expect(upgrade.choices[0]?.message.content).toBe("alpha beta gamma delta");
    expect(upgrade.id).toBe(upgradeId);
    // The slow answer is billed on its own, at its own model.
    const slow = await waitFor(() => served.get(`${upgradeId}:upgrade`), {
      timeoutMs: 10_000,
      description: "the slow model's served usage",
    });
    expect(slow.model).toBe("gpt-slow");
    expect(slow.outputTokens).toBeGreaterThan(0);

    const other = await createKey(gateway, { name: "routing-e2e-other" });
    const stranger = await fetch(url, { headers: { authorization: `Bearer ${other.key}` } });
    expect(stranger.status).toBe(404);
  });

  it("ends a speculative stream with an event naming the upgrade", async () => {
    const res = await fetch(`${gateway}/v1/chat/completions`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${key.key}`,
        "content-type": "application/json",
        "x-tokenmesh-speculative": "gpt-fake",
      },
      body: JSON.stringify({
        model: "gpt-slow",
        stream: true,
        max_tokens: 8,
        messages: [{ role: "user", content: "one two three" }],
      }),
    });
    const body = await res.text();
    const events = body
      .split("\n\n")
      .filter((e) => e.startsWith("data: ") && !e.includes("[DONE]"))
      .map((e) => JSON.parse(e.slice(6)) as { tokenmesh_upgrade?: { id: string; url: string } });
    const last = events.at(-1);
    expect(last?.tokenmesh_upgrade?.id).toBe(res.headers.get("x-tokenmesh-upgrade"));
    expect(last?.tokenmesh_upgrade?.url).toBe(`/v1/chat/completions/${last?.tokenmesh_upgrade?.id}/upgrade`);
    expect(body.trimEnd().endsWith("data: [DONE]")).toBe(true);
  });
});
