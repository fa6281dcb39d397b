import { describe, expect, it } from "vitest";
import { estimateChatTokens, estimateTextTokens } from "./tokens.js";

describe("estimateTextTokens", () => {
  it("counts short English words as one token and punctuation separately", () => {
    expect(estimateTextTokens("The quick brown fox jumps over the lazy dog.")).toBe(10);
  });
  it("splits long words, digit runs and CJK text", () => {
    expect(estimateTextTokens("antidisestablishmentarianism")).toBe(5);
    expect(estimateTextTokens("1234567")).toBe(3);
    expect(estimateTextTokens("你好世界")).toBe(4);
  });
  it("is zero for empty text and grows with length", () => {
    expect(estimateTextTokens("")).toBe(0);
    const t = "lorem ipsum dolor sit amet ".repeat(1000);
    expect(estimateTextTokens(t)).toBeGreaterThan(4000);
    expect(estimateTextTokens(t)).toBeLessThan(t.length / 2);
  });
});

describe("estimateChatTokens", () => {
  it("adds per-message and per-image overhead", () => {
    expect(estimateChatTokens([])).toBe(3);
    expect(estimateChatTokens([{ texts: ["hi"], images: 0 }])).toBe(3 + 3 + 1);
    expect(estimateChatTokens([{ texts: [], images: 2 }])).toBe(3 + 3 + 170);
  });
});
