import { type Catalog, CatalogSchema } from "@tokenmesh/catalog";
import { AppError } from "@tokenmesh/runtime";
import { describe, expect, it } from "vitest";
import { resolveModel } from "./resolve.js";
import { parseRoutes, RoutesError } from "./routes.js";

const upstream = { engine: "openai", base_url: "http://127.0.0.1:1/v1", upstream_model: "m" } as const;

function catalog(routes?: Record<string, unknown>): Catalog {
  return CatalogSchema.parse({
    models: [
      { id: "local-tiny", engine: "local", source: "/m.gguf", aliases: ["tiny", "default"], tier: "small" },
      { id: "local-embed", engine: "local", source: "/e.gguf", kind: "embedding" },
      { ...upstream, id: "gpt-4o-mini", tier: "large", fallbacks: ["claude-haiku", "local-embed", "claude-haiku"] },
      { ...upstream, id: "claude-haiku", tier: "large", fallbacks: ["gpt-4o-mini"] },
      { ...upstream, id: "small-b", tier: "small" },
    ],
    ...(routes ? { routes } : {}),
  });
}

const routes = {
  auto: { default_tier: "small", tiers: { small: ["local-tiny", "small-b"], large: ["gpt-4o-mini", "claude-haiku"] } },
  retry: { max_attempts: 3, base_delay_ms: 100, max_delay_ms: 2000 },
};

function codeOf(fn: () => unknown): AppError {
  try {
    fn();
  } catch (err) {
    if (err instanceof AppError) return err;
    throw err;
  }
  throw new Error("expected an AppError");
}

describe("resolveModel", () => {
  const cat = catalog(routes);
  const cfg = parseRoutes(cat);

  it("resolves an id to the model and its fallback chain, deduplicated and of the request's kind", () => {
    const r = resolveModel(cat, cfg, "gpt-4o-mini", "chat");
    expect(r.model.id).toBe("gpt-4o-mini");
    expect(r.candidates.map((m) => m.id)).toEqual(["gpt-4o-mini", "claude-haiku"]);
  });

  it("resolves an alias to its model", () => {
    expect(resolveModel(cat, cfg, "tiny", "chat").model.id).toBe("local-tiny");
    expect(resolveModel(cat, cfg, "default", "chat").candidates.map((m) => m.id)).toEqual(["local-tiny"]);
  });

  it("does not loop on fallback cycles", () => {
    expect(resolveModel(cat, cfg, "claude-haiku", "chat").candidates.map((m) => m.id)).toEqual([
      "claude-haiku",
      "gpt-4o-mini",
    ]);
  });

  it("answers NOT_FOUND model_not_found for an unknown model", () => {
    const err = codeOf(() => resolveModel(cat, cfg, "gpt-5-ultra", "chat"));
    expect(err.code).toBe("NOT_FOUND");
    expect(err.reason).toBe("model_not_found");
    expect(err.param).toBe("model");
    expect(err.retryable).toBe(false);
  });

  it("answers INVALID_ARGUMENT when the model's kind does not match the request", () => {
    const err = codeOf(() => resolveModel(cat, cfg, "local-embed", "chat"));
    expect(err.code).toBe("INVALID_ARGUMENT");
    expect(err.param).toBe("model");
    expect(codeOf(() => resolveModel(cat, cfg, "tiny", "embedding")).code).toBe("INVALID_ARGUMENT");
    expect(resolveModel(cat, cfg, "local-embed", "embedding").model.id).toBe("local-embed");
  });

  it("resolves auto to the first ready model of the default tier, then the tier's others", () => {
    const r = resolveModel(cat, cfg, "auto", "chat");
    expect(r.tier).toBe("small");
    expect(r.candidates.map((m) => m.id)).toEqual(["local-tiny", "small-b"]);
    const notTiny = resolveModel(cat, cfg, "auto", "chat", (id) => id !== "local-tiny");
    expect(notTiny.model.id).toBe("small-b");
    expect(notTiny.candidates.map((m) => m.id)).toEqual(["small-b", "local-tiny"]);
  });

  it("picks the tier's first model when none is ready", () => {
    expect(resolveModel(cat, cfg, "auto", "chat", () => false).model.id).toBe("local-tiny");
  });

  it("resolves auto:<tier> to a named tier, with the pick's fallbacks before the tier's others", () => {
    const r = resolveModel(cat, cfg, "auto:large", "chat", (id) => id !== "gpt-4o-mini");
    expect(r.model.id).toBe("claude-haiku");
    expect(r.candidates.map((m) => m.id)).toEqual(["claude-haiku", "gpt-4o-mini"]);
    expect(codeOf(() => resolveModel(cat, cfg, "auto:huge", "chat")).code).toBe("NOT_FOUND");
  });

  it("derives tiers from the models' tier fields when routes.auto is absent", () => {
    const bare = catalog();
    const derived = parseRoutes(bare);
    expect(derived.defaultTier).toBe("small");
    expect(resolveModel(bare, derived, "auto", "chat").candidates.map((m) => m.id)).toEqual(["local-tiny", "small-b"]);
    expect(derived.retry).toEqual({ maxAttempts: 3, baseDelayMs: 100, maxDelayMs: 2000 });
  });

  it("answers NOT_FOUND for auto when the tier has no model of the request's kind", () => {
    expect(codeOf(() => resolveModel(cat, cfg, "auto", "embedding")).code).toBe("NOT_FOUND");
  });

  it("rejects an empty model name", () => {
    expect(codeOf(() => resolveModel(cat, cfg, "", "chat")).code).toBe("INVALID_ARGUMENT");
  });
});

describe("parseRoutes", () => {
  it("rejects tiers naming unknown models, unknown keys and a default tier that is not a tier", () => {
    expect(() => parseRoutes(catalog({ auto: { default_tier: "small", tiers: { small: ["nope"] } } }))).toThrow(
      /unknown model "nope"/,
    );
    expect(() => parseRoutes(catalog({ retries: {} }))).toThrow(RoutesError);
    expect(() => parseRoutes(catalog({ auto: { default_tier: "mid", tiers: { small: ["local-tiny"] } } }))).toThrow(
      /default_tier/,
    );
    expect(() => parseRoutes(catalog({ retry: { base_delay_ms: 500, max_delay_ms: 100 } }))).toThrow(/max_delay_ms/);
  });
});
