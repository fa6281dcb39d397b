import { type Catalog, CatalogSchema } from "@tokenmesh/catalog";
import { describe, expect, it } from "vitest";
import { type AutoInput, chooseAuto } from "./auto-route.js";
import { parseRoutes } from "./routes.js";

const up = { engine: "openai", base_url: "http://127.0.0.1:1/v1", upstream_model: "m" } as const;
const price = (i: number, o: number) => ({ input_per_mtok: i, output_per_mtok: o });

const catalog: Catalog = CatalogSchema.parse({
  models: [
    { ...up, id: "mini-a", price: price(0.1, 0.4), context_window: 4096 },
    { ...up, id: "mini-b", price: price(0.1, 0.4), context_window: 4096 },
    { ...up, id: "mini-pricey", price: price(1, 4), context_window: 4096 },
    { ...up, id: "big", price: price(3, 15), context_window: 200_000 },
    { ...up, id: "big-cheap", price: price(2, 10), context_window: 8192 },
  ],
  routes: {
    auto: {
      default_tier: "small",
      tiers: { small: ["mini-pricey", "mini-a", "mini-b"], large: ["big", "big-cheap"], other: ["big"] },
      scoring: { thresholds: { large: 0.5 } },
    },
  },
});
const routes = parseRoutes(catalog);
const models = new Map(catalog.models.map((m) => [m.id, m]));
const ask = (content: string, maxTokens?: number) => ({ messages: [{ role: 2, content }], maxTokens });

function choose(over: Partial<AutoInput> & Pick<AutoInput, "request">) {
  return chooseAuto({ routes, models, isReady: () => true, latencyMs: () => undefined, ...over });
}

describe("chooseAuto", () => {
  it("takes the cheapest model of the scored tier, and says why", () => {
    const got = choose({ request: ask("hello there") });
    expect(got?.model.id).toBe("mini-a");
    expect(got?.reason).toBe("auto:small score=0.00 signals=none");
  });

  it("prefers the lower recent latency when prices tie", () => {
    const got = choose({
      request: ask("hello"),
      latencyMs: (id) => (id === "mini-b" ? 80 : id === "mini-a" ? 300 : 1),
    });
    expect(got?.model.id).toBe("mini-b");
  });

  it("skips models that are not ready", () => {
    expect(choose({ request: ask("hello"), isReady: (id) => id !== "mini-a" })?.model.id).toBe("mini-b");
  });

  it("sends a demanding request to the large tier, cheapest model that holds it", () => {
    const code =
      "Explain step by step why this TypeScript function leaks and refactor it:\n```ts\nconst x = () => {};\n```";
    const got = choose({ request: ask(code) });
    expect(got?.tier).toBe("large");
    expect(got?.model.id).toBe("big-cheap");
    expect(got?.reason).toMatch(/^auto:large score=0\.\d\d signals=code,reasoning/);
  });

  it("moves up a tier when no model of the scored tier holds the request", () => {
    const got = choose({ request: ask("hi", 6_000) });
    expect(got?.tier).toBe("large");
    expect(got?.model.id).toBe("big-cheap");
    const huge = choose({ request: ask("word ".repeat(9_000)) });
    expect(huge?.model.id).toBe("big");
    expect(got?.reason).toMatch(/^auto:large score=.* context$/);
  });

  it("follows the hints: cheapest and fastest across tiers, best the top tier", () => {
    const code = "Prove this theorem step by step and implement it in Python: ```def f(): pass```";
    expect(choose({ request: ask(code), prefer: "cheapest" })).toMatchObject({
      model: { id: "mini-a" },
      reason: "auto:cheapest tier=small",
    });
    expect(
      choose({ request: ask("hello"), prefer: "fastest", latencyMs: (id) => (id === "big" ? 5 : 50) }),
    ).toMatchObject({ model: { id: "big" }, reason: "auto:fastest tier=large" });
    expect(choose({ request: ask("hello"), prefer: "best" })).toMatchObject({
      model: { id: "big-cheap" },
      reason: "auto:large prefer=best",
    });
  });

  it("is not used without routes.auto.scoring", () => {
    const plain = parseRoutes({
      ...catalog,
      routes: { auto: { default_tier: "small", tiers: { small: ["mini-a"] } } },
    });
    expect(chooseAuto({ routes: plain, models, request: ask("x"), isReady: () => true, latencyMs: () => 1 })).toBe(
      undefined,
    );
  });
});

describe("routes.auto.scoring", () => {
  it("rejects thresholds for unknown tiers and unknown signals", () => {
    const bad = (scoring: unknown) => () =>
      parseRoutes({ ...catalog, routes: { auto: { default_tier: "small", tiers: { small: ["mini-a"] }, scoring } } });
    expect(bad({ thresholds: { huge: 0.5 } })).toThrow(/thresholds/);
    expect(bad({ thresholds: {}, weights: { vibes: 1 } })).toThrow(/weights/);
    expect(bad({ thresholds: { small: 1.5 } })).toThrow(/thresholds/);
  });
});
