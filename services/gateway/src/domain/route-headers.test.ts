import { describe, expect, it } from "vitest";
import { routeHeaders } from "./route-headers.js";

describe("routeHeaders", () => {
  const base = { reason: "model:chat", upgradeId: "" };

  it("says nothing of caches when the model answered", () => {
    expect(routeHeaders({ ...base, cacheKind: "", cacheSimilarity: 0 })).toEqual({
      "x-tokenmesh-route-reason": "model:chat",
    });
  });

  it("names an exact cache hit", () => {
    expect(routeHeaders({ ...base, cacheKind: "exact", cacheSimilarity: 0 })["x-tokenmesh-cache"]).toBe("exact");
  });

  it("gives a semantic hit's similarity to three decimals, reading 1 only for a perfect match", () => {
    const header = (sim: number) =>
      routeHeaders({ ...base, cacheKind: "semantic", cacheSimilarity: sim })["x-tokenmesh-cache"];
    expect(header(0.97)).toBe("semantic;sim=0.97");
    expect(header(0.9712345)).toBe("semantic;sim=0.971");
    expect(header(Math.fround(0.95))).toBe("semantic;sim=0.95");
    expect(header(0.99999)).toBe("semantic;sim=0.999");
    expect(header(1)).toBe("semantic;sim=1");
  });
});
