import { CatalogSchema } from "@tokenmesh/catalog";
import { describe, expect, it } from "vitest";
import { AnswerCompletion, type CacheableRequest, cacheKey, cacheMode, canonicalJson } from "./cache.js";
import { type CachePolicy, parseRoutes, RoutesError } from "./routes.js";

/** A request as the router sees it after decoding from the wire: every default filled in. */
function request(extra: Partial<CacheableRequest & { user: string; stream: boolean }> = {}) {
  return {
    model: "gpt",
    messages: [
      { role: 1, content: "be brief", parts: [], name: "", toolCalls: [], toolCallId: "", refusal: "" },
      { role: 2, content: "hi", parts: [], name: "", toolCalls: [], toolCallId: "", refusal: "" },
    ],
    tools: [] as unknown[],
    toolChoice: undefined,
    parallelToolCalls: undefined,
    responseFormat: undefined,
    temperature: 0,
    topP: undefined,
    maxTokens: 64,
    stop: [] as string[],
    seed: undefined,
    n: 0,
    user: "alice",
    stream: false,
    streamOptions: undefined,
    presencePenalty: undefined,
    frequencyPenalty: undefined,
    metadata: {} as Record<string, string>,
    ...extra,
  };
}

const policy: CachePolicy = { enabled: true, ttlMs: 300_000, maxEntryBytes: 262_144, deterministicOnly: true };

describe("cacheKey", () => {
  it("is a stable SHA-256 for the same request and model", () => {
    const key = cacheKey("gpt", request());
    expect(key).toMatch(/^[0-9a-f]{64}$/);
    expect(cacheKey("gpt", request())).toBe(key);
  });

  it("ignores user, stream, stream options, metadata and the requested name", () => {
    const key = cacheKey("gpt", request());
    expect(cacheKey("gpt", request({ user: "bob" }))).toBe(key);
    expect(cacheKey("gpt", request({ stream: true }))).toBe(key);
    expect(cacheKey("gpt", { ...request(), streamOptions: { includeUsage: true } } as CacheableRequest)).toBe(key);
    expect(cacheKey("gpt", request({ metadata: { cache: "refresh", trace: "x" } }))).toBe(key);
    expect(cacheKey("gpt", { ...request(), model: "auto" } as CacheableRequest)).toBe(key);
  });

  it("changes with the resolved model and with every output-shaping field", () => {
    const key = cacheKey("gpt", request());
    const variants: Partial<CacheableRequest>[] = [
      { temperature: 0.7 },
      { temperature: undefined },
      { topP: 0.5 },
      { maxTokens: 65 },
      { maxTokens: undefined },
      { stop: ["\n"] },
      { seed: 1 },
      { n: 2 },
      { presencePenalty: 0.1 },
      { frequencyPenalty: 0 },
      { parallelToolCalls: false },
      { toolChoice: { mode: 2 } },
      { responseFormat: { type: 2 } },
      { tools: [{ type: "function", function: { name: "f", description: "", parameters: {} } }] },
      { messages: [{ role: 2, content: "hi!" }] },
    ];
    const keys = new Set([key, cacheKey("other", request())]);
    for (const v of variants) keys.add(cacheKey("gpt", request(v)));
    expect(keys.size).toBe(variants.length + 2);
  });

  it("treats n 0 and 1 alike and ignores object key order", () => {
    expect(cacheKey("gpt", request({ n: 1 }))).toBe(cacheKey("gpt", request({ n: 0 })));
    const schema = (order: "ab" | "ba") => ({
      type: "function",
      function: {
        name: "f",
        description: "",
        parameters: order === "ab" ? { a: 1, b: { x: 1, y: 2 } } : { b: { y: 2, x: 1 }, a: 1 },
      },
    });
    expect(cacheKey("gpt", request({ tools: [schema("ab")] }))).toBe(
      cacheKey("gpt", request({ tools: [schema("ba")] })),
    );
  });
});

describe("canonicalJson", () => {
  it("sorts keys at every level, keeps array order and drops undefined members", () => {
    expect(canonicalJson({ b: [{ d: 1, c: 2 }], a: undefined, e: null })).toBe('{"b":[{"c":2,"d":1}],"e":null}');
  });
});

describe("cacheMode", () => {
  it("is off when the cache is disabled, whatever the request says", () => {
    expect(cacheMode({ ...policy, enabled: false }, request())).toBe("off");
    expect(cacheMode({ ...policy, enabled: false }, request({ metadata: { cache: "refresh" } }))).toBe("off");
  });

  it("looks up deterministic requests only: temperature 0 or a seed", () => {
    expect(cacheMode(policy, request({ temperature: 0 }))).toBe("lookup");
    expect(cacheMode(policy, request({ temperature: 0.7, seed: 42 }))).toBe("lookup");
    expect(cacheMode(policy, request({ temperature: undefined, seed: 0 }))).toBe("lookup");
    expect(cacheMode(policy, request({ temperature: 0.7 }))).toBe("bypass");
    expect(cacheMode(policy, request({ temperature: undefined }))).toBe("bypass");
  });

  it("caches any request when deterministic_only is off", () => {
    expect(cacheMode({ ...policy, deterministicOnly: false }, request({ temperature: 1 }))).toBe("lookup");
  });

  it("honours the per-request metadata switch", () => {
    expect(cacheMode(policy, request({ metadata: { cache: "no" } }))).toBe("bypass");
    expect(cacheMode(policy, request({ metadata: { cache: " NO " } }))).toBe("bypass");
    expect(cacheMode(policy, request({ metadata: { cache: "refresh" } }))).toBe("refresh");
    // Refreshing a non-deterministic answer would store what deterministic_only forbids.
    expect(cacheMode(policy, request({ temperature: 1, metadata: { cache: "refresh" } }))).toBe("bypass");
    expect(cacheMode(policy, request({ metadata: { cache: "yes" } }))).toBe("lookup");
  });
});

describe("AnswerCompletion", () => {
  const delta = (index: number, finishReason = 0) => ({ choices: [{ index, finishReason }] });
  const usage = { choices: [], usage: { inputTokens: 1, outputTokens: 1 } };

  it("is complete once every choice finished and usage arrived", () => {
    const c = new AnswerCompletion();
    for (const chunk of [delta(0), delta(1), delta(0, 1), delta(1, 2)]) c.observe(chunk);
    expect(c.complete).toBe(false);
    c.observe(usage);
    expect(c.complete).toBe(true);
  });

  it("is incomplete without a finish reason, without usage, or with a choice left open", () => {
    const noFinish = new AnswerCompletion();
    for (const chunk of [delta(0), usage]) noFinish.observe(chunk);
    expect(noFinish.complete).toBe(false);
    const noUsage = new AnswerCompletion();
    noUsage.observe(delta(0, 1));
    expect(noUsage.complete).toBe(false);
    const open = new AnswerCompletion();
    for (const chunk of [delta(0, 1), delta(1), usage]) open.observe(chunk);
    expect(open.complete).toBe(false);
    expect(new AnswerCompletion().complete).toBe(false);
  });
});

describe("parseRoutes cache", () => {
  const catalog = (routes?: Record<string, unknown>) =>
    CatalogSchema.parse({
      models: [{ id: "m", engine: "openai", base_url: "http://127.0.0.1:1/v1", upstream_model: "m" }],
      ...(routes ? { routes } : {}),
    });

  it("is off by default, with the documented defaults", () => {
    expect(parseRoutes(catalog()).cache).toEqual({
      enabled: false,
      ttlMs: 300_000,
      maxEntryBytes: 262_144,
      deterministicOnly: true,
    });
    expect(parseRoutes(catalog({ cache: { enabled: true, ttl_s: 5 } })).cache).toMatchObject({
      enabled: true,
      ttlMs: 5_000,
    });
  });

  it("rejects unknown keys and out-of-range values", () => {
    expect(() => parseRoutes(catalog({ cache: { enabled: true, ttl: 5 } }))).toThrow(RoutesError);
    expect(() => parseRoutes(catalog({ cache: { ttl_s: 0 } }))).toThrow(/routes\.cache\.ttl_s/);
    expect(() => parseRoutes(catalog({ cache: { max_entry_bytes: -1 } }))).toThrow(/max_entry_bytes/);
    expect(() => parseRoutes(catalog({ cache: { enabled: "yes" } }))).toThrow(/routes\.cache\.enabled/);
  });
});

describe("cacheScope", () => {
  it("scopes entries to the team, else the key, unless the model shares its cache", async () => {
    const { cacheScope } = await import("./cache.js");
    expect(cacheScope({ team: "red", keyId: "k1" }, false)).toBe("team:red");
    expect(cacheScope({ team: "", keyId: "k1" }, false)).toBe("key:k1");
    expect(cacheScope({ team: "red", keyId: "k1" }, true)).toBe("");
  });
});
