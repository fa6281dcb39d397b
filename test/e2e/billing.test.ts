import { waitFor } from "@tokenmesh/testing";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { ADMIN_KEY, createKey, type Mesh, startMesh } from "./mesh.js";

// Every token served is billed: streams the client drops, streams a fault cuts, requests whose gateway dies.
// "gpt-slow" is the fake OpenAI upstream echoing the prompt one word per chunk, 40 ms apart; the fake counts a word
// as a token, and so does the mesh's estimator for words of up to six letters, so estimates can be compared exactly.

let mesh: Mesh;
let gateway: string;

beforeAll(async () => {
  mesh = await startMesh({ natsUrl: inject("natsUrl"), redisUrl: inject("redisUrl") });
  gateway = mesh.gateways[0]!.http;
});

afterAll(async () => {
  await mesh?.stop();
});

const WORDS =
  "apple beach cloud delta eagle frost grape house ivory jelly knife lemon mango noble ocean piano queen river stone tiger";
/** A prompt of `n` short words: the answer echoes it, so it is `n` tokens in and `n` tokens out. */
const prompt = (n: number) => Array.from({ length: n }, (_, i) => WORDS.split(" ")[i % 20]).join(" ");

interface Totals {
  requests: number;
  inputTokens: number;
  outputTokens: number;
  errors: number;
}
const ledger = async (keyId: string): Promise<Totals> => {
  const res = await fetch(`${gateway}/admin/usage?keyId=${keyId}&period=month`, {
    headers: { authorization: `Bearer ${ADMIN_KEY}` },
  });
  return (await res.json()) as Totals;
};

describe("partial answers are billed", () => {
  it("bills a stream the client abandons for the tokens generated so far, as cancelled", async () => {
    const k = await createKey(gateway, { name: "abandons" });
    const client = new OpenAI({ baseURL: `${gateway}/v1`, apiKey: k.key, maxRetries: 0 });
    const ac = new AbortController();
    let seen = 0;
    await (async () => {
      const stream = await client.chat.completions.create(
        { model: "gpt-slow", stream: true, messages: [{ role: "user", content: prompt(60) }] },
        { signal: ac.signal },
      );
      for await (const chunk of stream) {
        if (chunk.choices[0]?.delta?.content) seen++;
        if (seen === 10) ac.abort();
      }
    })().catch(() => undefined);
    expect(seen).toBe(10);
    const billed = await waitFor(
      async () => {
        const t = await ledger(k.id);
        return t.requests === 1 && t.outputTokens >= 10 ? t : undefined;
      },
      { timeoutMs: 15_000, description: "the abandoned stream in the ledger" },
    );
    // What the router received before the abort reached the upstream: what the client saw, plus the few words in
    // flight (40 ms apart), never the whole answer.
    expect(billed.outputTokens).toBeLessThan(20);
    expect(billed.inputTokens).toBeGreaterThanOrEqual(60);
    expect(billed.errors).toBe(1);
  });

  it("bills streams cut by a router kill -9 for what their clients received, and the router comes back", async () => {
    const k = await createKey(gateway, { name: "router-dies" });
    const client = new OpenAI({ baseURL: `${gateway}/v1`, apiKey: k.key, maxRetries: 0 });
    const seen = [0, 0, 0, 0];
    let killed: Promise<void> | undefined;
    const outcomes = await Promise.all(
      seen.map(async (_, i) => {
        try {
          const stream = await client.chat.completions.create({
            model: "gpt-slow",
            stream: true,
            messages: [{ role: "user", content: prompt(80) }],
          });
          for await (const chunk of stream) {
            if (chunk.choices[0]?.delta?.content) seen[i]!++;
            if (seen.every((n) => n >= 5)) killed ??= mesh.kill("router");
          }
          return "clean end";
        } catch (err) {
          return err instanceof OpenAI.APIError ? "error event" : String(err);
        }
      }),
    );
    await killed;
    // A stream broken after its first byte ends with an error, never a clean ending.
    expect(outcomes).toEqual(["error event", "error event", "error event", "error event"]);
    const received = seen.reduce((a, b) => a + b, 0);
    const billed = await waitFor(
      async () => {
        const t = await ledger(k.id);
        return t.requests === 4 ? t : undefined;
      },
      { timeoutMs: 15_000, description: "the four cut streams in the ledger" },
    );
    expect(billed.outputTokens).toBeGreaterThanOrEqual(received);
    expect(billed.outputTokens).toBeLessThan(4 * 80);
    expect(billed.inputTokens).toBeGreaterThanOrEqual(4 * 80);
    await mesh.restart("router");
    const again = await client.chat.completions.create({
      model: "gpt-fake",
      messages: [{ role: "user", content: "hi" }],
    });
    expect(again.choices[0]!.message.content).toBe("hi");
  });

  it("leaves the ledger equal to what the upstream served when the gateway is killed -9 under load", async () => {
    const k = await createKey(gateway, { name: "gateway-dies" });
    mesh.fakeOpenAI.reset();
    const words = 12;
    let stop = false;
    const send = async () => {
      try {
        const res = await fetch(`${gateway}/v1/chat/completions`, {
          method: "POST",
          headers: { authorization: `Bearer ${k.key}`, "content-type": "application/json" },
          body: JSON.stringify({ model: "gpt-slow", messages: [{ role: "user", content: prompt(words) }] }),
        });
        await res.text();
      } catch {
        // the gateway is gone: the client sees a connection error
      }
    };
    // ~30 requests a second for as long as the gateway lives; it dies after a second of it.
    const load = (async () => {
      const inFlight: Promise<void>[] = [];
      while (!stop) {
        inFlight.push(send());
        // Pacing of the load generator (~30 requests a second), not a wait for a condition.
        await new Promise((r) => setTimeout(r, 33));
      }
      await Promise.all(inFlight);
    })();
    await waitFor(() => mesh.fakeOpenAI.requests.length >= 30, { timeoutMs: 10_000, description: "load" });
    await mesh.kill("gateway-0");
    stop = true;
    await load;
    const outcomes = await Promise.all(mesh.fakeOpenAI.requests.map((r) => r.closed));
    const served = outcomes.filter((o) => o === "finished").length;
    expect(served).toBeGreaterThanOrEqual(25);
    await mesh.restart("gateway-0");
    // Every answer the upstream finished is billed, once: `words` tokens in and `words` out.
    const billed = await waitFor(
      async () => {
        const t = await ledger(k.id);
        return t.outputTokens >= served * words ? t : undefined;
      },
      { timeoutMs: 20_000, description: "every served answer in the ledger" },
    );
    expect(billed.outputTokens).toBe(served * words);
    expect(billed.inputTokens).toBe(served * words);
  });
});
