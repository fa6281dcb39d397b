import { describe, expect, it } from "vitest";
import { parseCatalog } from "./load.js";
import { reachableModels } from "./reach.js";

const up = (id: string, extra = "") =>
  `  - { id: ${id}, engine: openai, base_url: "http://x/v1", upstream_model: ${id}${extra} }\n`;

describe("reachableModels", () => {
  const catalog = parseCatalog(
    `models:\n${up("a", ", fallbacks: [b]")}${up("b", ", fallbacks: [c, a]")}${up("c")}${up("d", ", aliases: [dee]")}${up("e", ", kind: embedding")}` +
      "routes:\n  auto: { default_tier: small, tiers: { small: [d], large: [a] } }\n",
    "/",
  );
  const ids = (name: string, kind: "chat" | "embedding" = "chat") =>
    reachableModels(catalog, name, kind).map((m) => m.id);

  it("follows fallback chains transitively, once each", () => {
    expect(ids("a")).toEqual(["a", "b", "c"]);
    expect(ids("dee")).toEqual(["d"]);
  });
  it("covers every tier for auto and one tier for auto:<tier>", () => {
    expect(ids("auto").sort()).toEqual(["a", "b", "c", "d"]);
    expect(ids("auto:small")).toEqual(["d"]);
    expect(ids("auto:none")).toEqual([]);
  });
  it("keeps only the requested kind and knows nothing of unknown names", () => {
    expect(ids("e", "embedding")).toEqual(["e"]);
    expect(ids("e")).toEqual([]);
    expect(ids("zzz")).toEqual([]);
  });
});
