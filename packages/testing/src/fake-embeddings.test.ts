import { describe, expect, it } from "vitest";
import { fakeEmbedding, parseModelDirectives, wordsEmbedding } from "./fake-openai.js";

const cosine = (a: number[], b: number[]) => a.reduce((n, x, i) => n + x * b[i]!, 0);

describe("fake upstream embeddings", () => {
  it("gives unrelated hash vectors for near-duplicate texts", () => {
    const a = fakeEmbedding("tell me the capital of france", 256);
    const b = fakeEmbedding("please tell me the capital of france", 256);
    expect(cosine(a, b)).toBeLessThan(0.5);
  });

  it("gives close bag-of-words vectors for texts sharing most words, far ones for unrelated texts", () => {
    const a = wordsEmbedding("Tell me the capital of France", 256);
    expect(cosine(a, a)).toBeCloseTo(1, 6);
    expect(cosine(a, wordsEmbedding("tell me the capital of france?", 256))).toBeCloseTo(1, 6);
    const near = cosine(a, wordsEmbedding("please tell me the capital of france", 256));
    expect(near).toBeGreaterThan(0.9);
    expect(near).toBeLessThan(0.99);
    expect(cosine(a, wordsEmbedding("how do clouds form", 256))).toBeLessThan(0.3);
  });

  it("reads the words directive from a model name", () => {
    expect(parseModelDirectives("embed+words")).toEqual({ embedding: "words" });
  });
});
