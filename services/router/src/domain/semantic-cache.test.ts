import { type Catalog, CatalogSchema } from "@tokenmesh/catalog";
import { describe, expect, it } from "vitest";
import { parseRoutes, RoutesError } from "./routes.js";
import {
  conversationText,
  judgeNearest,
  type SemanticCachePolicy,
  type SemanticMessage,
  type SemanticRequest,
  semanticBucket,
  semanticMode,
  semanticScope,
} from "./semantic-cache.js";

const upstream = { engine: "openai", base_url: "http://127.0.0.1:1/v1", upstream_model: "m" } as const;

function catalog(semantic?: Record<string, unknown>): Catalog {
  return CatalogSchema.parse({
    models: [
      { ...upstream, id: "chat-a" },
      { ...upstream, id: "chat-b" },
      { ...upstream, id: "embed", kind: "embedding" },
    ],
    ...(semantic ? { routes: { semantic_cache: semantic } } : {}),
  });
}

function invalid(semantic: Record<string, unknown>): string {
  try {
    parseRoutes(catalog(semantic));
  } catch (err) {
    expect(err).toBeInstanceOf(RoutesError);
    return (err as Error).message;
  }
  throw new Error("expected a RoutesError");
}

const msg = (role: number, content: string, extra: Partial<SemanticMessage> = {}): SemanticMessage => ({
  role,
  content,
  parts: [],
  toolCalls: [],
  ...extra,
});

function request(over: Partial<SemanticRequest> = {}): SemanticRequest {
  return {
    messages: [msg(1, "You are terse."), msg(2, "What is the capital of France?")],
    tools: [],
    stop: [],
    n: 0,
    metadata: {},
    temperature: 0.8,
    ...over,
  };
}

const policy: SemanticCachePolicy = {
  enabled: true,
  embeddingModel: "embed",
  threshold: 0.95,
  ttlMs: 3_600_000,
  maxEntries: 10_000,
  scope: "team",
  timeoutMs: 150,
  maxEntryBytes: 262_144,
  models: [],
};

describe("routes.semantic_cache", () => {
  it("is off when absent", () => {
    expect(parseRoutes(catalog()).semanticCache).toMatchObject({ enabled: false, embeddingModel: undefined });
  });

  it("fills in the defaults", () => {
    expect(parseRoutes(catalog({ enabled: true, embedding_model: "embed" })).semanticCache).toEqual(policy);
  });

  it("reads every field", () => {
    const parsed = parseRoutes(
      catalog({
        enabled: true,
        embedding_model: "embed",
        threshold: 0.9,
        ttl_s: 60,
        max_entries: 500,
        scope: "global",
        timeout_ms: 40,
        max_entry_bytes: 1000,
        models: ["chat-b"],
      }),
    ).semanticCache;
    expect(parsed).toEqual({
      enabled: true,
      embeddingModel: "embed",
      threshold: 0.9,
      ttlMs: 60_000,
      maxEntries: 500,
      scope: "global",
      timeoutMs: 40,
      maxEntryBytes: 1000,
      models: ["chat-b"],
    });
  });

  it("needs an embedding model when enabled, but not when disabled", () => {
    expect(invalid({ enabled: true })).toContain("routes.semantic_cache.embedding_model");
    expect(parseRoutes(catalog({ enabled: false })).semanticCache.enabled).toBe(false);
  });

  it("rejects an embedding model that is unknown or not of kind embedding, and unknown or non-chat models", () => {
    expect(invalid({ enabled: true, embedding_model: "nope" })).toContain('unknown model "nope"');
    expect(invalid({ enabled: true, embedding_model: "chat-a" })).toContain('"chat-a" is not an embedding model');
    const both = invalid({ enabled: true, embedding_model: "embed", models: ["ghost", "embed"] });
    expect(both).toContain('routes.semantic_cache.models: unknown model "ghost"');
    expect(both).toContain('"embed" is not a chat model');
  });

  it("rejects out-of-range values and unknown keys, naming each", () => {
    const message = invalid({
      enabled: true,
      embedding_model: "embed",
      threshold: 0,
      ttl_s: 0,
      max_entries: 0,
      scope: "user",
      timeout_ms: 0,
      thresold: 0.9,
    });
    for (const field of ["threshold", "ttl_s", "max_entries", "scope", "timeout_ms"]) {
      expect(message).toContain(`routes.semantic_cache.${field}`);
    }
    expect(message).toContain("thresold");
    expect(invalid({ enabled: true, embedding_model: "embed", threshold: 1.5 })).toContain("threshold");
  });
});

describe("semanticMode", () => {
  it("looks up non-deterministic requests (unlike the exact cache) and deterministic ones alike", () => {
    expect(semanticMode(policy, request({ temperature: 1.2 }), "chat-a")).toBe("lookup");
    expect(semanticMode(policy, request({ temperature: undefined }), "chat-a")).toBe("lookup");
    expect(semanticMode(policy, request({ temperature: 0, seed: 3 }), "chat-a")).toBe("lookup");
  });

  it("is off when disabled or for a model not listed", () => {
    expect(semanticMode({ ...policy, enabled: false }, request(), "chat-a")).toBe("off");
    expect(semanticMode({ ...policy, models: ["chat-b"] }, request(), "chat-a")).toBe("off");
    expect(semanticMode({ ...policy, models: ["chat-b"] }, request(), "chat-b")).toBe("lookup");
  });

  it("follows metadata cache=no and cache=refresh", () => {
    expect(semanticMode(policy, request({ metadata: { cache: " No " } }), "chat-a")).toBe("bypass");
    expect(semanticMode(policy, request({ metadata: { cache: "refresh" } }), "chat-a")).toBe("refresh");
    expect(semanticMode(policy, request({ metadata: { cache: "whatever" } }), "chat-a")).toBe("lookup");
  });

  it("bypasses conversations whose meaning is not all in their text", () => {
    const image = msg(2, "", { parts: [{ text: "what is this?" }, { imageUrl: { url: "data:," } }] });
    expect(semanticMode(policy, request({ messages: [image] }), "chat-a")).toBe("bypass");
    const call = msg(3, "", { toolCalls: [{ id: "c1" }] });
    expect(semanticMode(policy, request({ messages: [msg(2, "weather?"), call] }), "chat-a")).toBe("bypass");
    expect(semanticMode(policy, request({ messages: [msg(2, "weather?"), msg(4, "sunny")] }), "chat-a")).toBe("bypass");
    expect(semanticMode(policy, request({ messages: [msg(1, "system only")] }), "chat-a")).toBe("bypass");
    expect(semanticMode(policy, request({ messages: [msg(2, "  ")] }), "chat-a")).toBe("bypass");
    const textParts = msg(2, "", { parts: [{ text: "hello " }, { text: "there" }] });
    expect(semanticMode(policy, request({ messages: [textParts] }), "chat-a")).toBe("lookup");
  });
});

describe("semanticScope", () => {
  const caller = { keyId: "key-1", team: "red" };

  it("scopes team answers to the team, or to the key when there is no team", () => {
    expect(semanticScope("team", caller)).toBe("team:red");
    expect(semanticScope("team", { keyId: "key-1", team: "" })).toBe("key:key-1");
  });

  it("scopes key answers to the key even within a team", () => {
    expect(semanticScope("key", caller)).toBe("key:key-1");
  });

  it("shares global answers with everyone, identified or not", () => {
    expect(semanticScope("global", caller)).toBe("global");
    expect(semanticScope("global", { keyId: "", team: "" })).toBe("global");
  });

  it("gives no scope to an anonymous caller under team or key scope", () => {
    expect(semanticScope("team", { keyId: "", team: "" })).toBeUndefined();
    expect(semanticScope("key", { keyId: "", team: "red" })).toBeUndefined();
  });

  it("keeps a team and a key of the same name apart", () => {
    expect(semanticScope("team", { keyId: "", team: "x" })).not.toBe(semanticScope("key", { keyId: "x", team: "" }));
  });
});

describe("semanticBucket", () => {
  const bucket = (r: SemanticRequest, model = "chat-a", scope = "team:red", embed = "embed") =>
    semanticBucket(embed, model, scope, r);

  it("ignores the question, sampling settings, user, metadata and stream", () => {
    const base = bucket(request());
    expect(bucket(request({ messages: [msg(1, "You are terse."), msg(2, "Capital of France, please?")] }))).toBe(base);
    expect(bucket(request({ temperature: 0.1, topP: 0.5, seed: 9, presencePenalty: 1, frequencyPenalty: 1 }))).toBe(
      base,
    );
    expect(bucket(request({ metadata: { cache: "refresh", trace: "x" } }))).toBe(base);
    expect(bucket(request({ n: 1 }))).toBe(base);
  });

  it("differs by embedding model, served model and scope", () => {
    const base = bucket(request());
    expect(bucket(request(), "chat-b")).not.toBe(base);
    expect(bucket(request(), "chat-a", "team:blue")).not.toBe(base);
    expect(bucket(request(), "chat-a", "team:red", "embed-2")).not.toBe(base);
  });

  it("differs by the system prompt and every answer-shaping field outside the conversation", () => {
    const base = bucket(request());
    expect(
      bucket(request({ messages: [msg(1, "You are verbose."), msg(2, "What is the capital of France?")] })),
    ).not.toBe(base);
    expect(
      bucket(request({ messages: [msg(5, "You are terse."), msg(2, "What is the capital of France?")] })),
    ).not.toBe(base);
    expect(bucket(request({ tools: [{ type: "function", function: { name: "f" } }] }))).not.toBe(base);
    expect(bucket(request({ toolChoice: { mode: 2 } }))).not.toBe(base);
    expect(bucket(request({ responseFormat: { type: 2 } }))).not.toBe(base);
    expect(bucket(request({ maxTokens: 10 }))).not.toBe(base);
    expect(bucket(request({ stop: ["\n"] }))).not.toBe(base);
    expect(bucket(request({ n: 2 }))).not.toBe(base);
    expect(bucket(request({ parallelToolCalls: false }))).not.toBe(base);
  });
});

describe("conversationText", () => {
  it("is a single user turn's text alone, without the system prompt", () => {
    expect(conversationText(request())).toBe("What is the capital of France?");
  });

  it("is one role-prefixed line per turn for a longer conversation", () => {
    const r = request({
      messages: [msg(1, "sys"), msg(2, "hi"), msg(3, "hello, how can I help?"), msg(2, "", { parts: [{ text: "a" }] })],
    });
    expect(conversationText(r)).toBe("user: hi\nassistant: hello, how can I help?\nuser: a");
  });
});

describe("judgeNearest", () => {
  it("hits at or above the threshold and misses below it, keeping the similarity", () => {
    expect(judgeNearest({ similarity: 0.95, answer: "a" }, 0.95)).toEqual({
      result: "hit",
      similarity: 0.95,
      answer: "a",
    });
    expect(judgeNearest({ similarity: 0.9499, answer: "a" }, 0.95)).toEqual({ result: "miss", similarity: 0.9499 });
    expect(judgeNearest(undefined, 0.95)).toEqual({ result: "miss" });
  });
});
