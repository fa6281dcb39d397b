import { describe, expect, it } from "vitest";
import { DEFAULT_WEIGHTS, type ScorableRequest, type Signal, scoreComplexity, tierForScore } from "./complexity.js";

const USER = 2;
const ASSISTANT = 3;
const SYSTEM = 1;

const user = (content: string) => ({ role: USER, content });
const req = (content: string, extra: Partial<ScorableRequest> = {}): ScorableRequest => ({
  messages: [user(content)],
  ...extra,
});

const thresholds = new Map([
  ["medium", 0.3],
  ["large", 0.6],
]);

const longCode = [
  "Here is my TypeScript service. It leaks memory under load and I cannot see why.",
  "```ts",
  ...Array.from(
    { length: 60 },
    (_, i) =>
      `export async function handler${i}(req: Request): Promise<Response> { const body = await req.json(); cache.set(body.id${i}, body); return new Response(JSON.stringify(body)); }`,
  ),
  "```",
  "Explain why it leaks, step by step, and refactor it.",
].join("\n");

const chineseLongCode = [
  "请帮我分析下面这段代码为什么会内存泄漏，并逐步解释如何重构：",
  "```python",
  ...Array.from(
    { length: 60 },
    (_, i) => `def handler_${i}(request):\n    cache[request.id] = request.body  # 缓存请求 ${i}`,
  ),
  "```",
].join("\n");

const conversation = Array.from({ length: 12 }, (_, i) =>
  i % 2 === 0 ? user(`question number ${i} about the weather`) : { role: ASSISTANT, content: `answer ${i}` },
);

/** [title, request, expected tier, signals that must fire]. */
const table: [string, ScorableRequest, string, Signal[]][] = [
  ["a greeting", req("Hi! How are you today?"), "small", []],
  ["a short factual question", req("What is the capital of France?"), "small", []],
  ["a Chinese greeting", req("你好，今天天气怎么样？"), "small", []],
  ["a short Chinese question", req("北京是中国的首都吗？"), "small", []],
  ["a one-line code question", req("How do I reverse a list in Python?"), "medium", ["code"]],
  ["a Chinese code question", req("如何用 Python 写一个函数来反转列表？请给出代码。"), "medium", ["code"]],
  ["a math proof", req("Prove that the integral of 1/x from 1 to e equals 1."), "medium", ["math"]],
  ["a Chinese math question", req("请证明：当 x > 0 时，函数 f(x) = x^2 + 1 的导数大于 0。"), "medium", ["math"]],
  ["a long code review", req(longCode), "large", ["code", "long", "reasoning"]],
  ["a long Chinese code review", req(chineseLongCode), "large", ["code", "long", "reasoning"]],
  [
    "a design question asking for step-by-step reasoning with code",
    req(
      "Design a rate limiter for a distributed API. Compare token bucket and sliding window, explain the trade-offs step by step, then implement it in TypeScript.",
    ),
    "large",
    ["code", "reasoning"],
  ],
  [
    "a Chinese multi-step analysis with math",
    req("请一步一步分析并比较这两种算法的时间复杂度，并证明快速排序的平均复杂度是 O(n log n)。"),
    "large",
    ["reasoning", "math", "code"],
  ],
  [
    "tools and a JSON schema on a short ask",
    req("What's the weather in Paris?", {
      tools: [{ type: "function" }],
      responseFormat: { type: 3 },
    }),
    "medium",
    ["tools", "json"],
  ],
  ["a long chatty conversation", { messages: conversation }, "small", ["turns"]],
  [
    "an image with a question",
    {
      messages: [
        { role: USER, content: "", parts: [{ text: "What is in this picture?" }, { imageUrl: { url: "x" } }] },
      ],
    },
    "medium",
    ["images"],
  ],
  ["a huge output budget", req("Write a story.", { maxTokens: 16_000 }), "small", ["max_tokens"]],
  [
    "a system prompt about code does not make a greeting code",
    { messages: [{ role: SYSTEM, content: "You are a Python coding assistant. ```def f(): pass```" }, user("hi")] },
    "small",
    [],
  ],
];

describe("scoreComplexity", () => {
  it.each(table.map(([title, request, tier, signals]) => ({ title, request, tier, signals })))(
    "$title → $tier",
    ({ request, tier, signals }) => {
      const scored = scoreComplexity(request, DEFAULT_WEIGHTS);
      expect(tierForScore(scored.score, thresholds, "small")).toBe(tier);
      for (const s of signals) expect(scored.signals).toContain(s);
      if (signals.length === 0) expect(scored.signals).toEqual([]);
      expect(scored.score).toBeGreaterThanOrEqual(0);
      expect(scored.score).toBeLessThanOrEqual(1);
    },
  );

  it("is deterministic and caps the score at 1", () => {
    const everything = req(longCode, { tools: [{}], responseFormat: { type: 3 }, maxTokens: 10_000 });
    const a = scoreComplexity(everything, DEFAULT_WEIGHTS);
    expect(a).toEqual(scoreComplexity(everything, DEFAULT_WEIGHTS));
    expect(a.score).toBe(1);
  });

  it("follows the catalog's weights: a zero weight silences a signal", () => {
    const question = req("How do I reverse a list in Python?");
    const scored = scoreComplexity(question, { ...DEFAULT_WEIGHTS, code: 0 });
    expect(scored.signals).not.toContain("code");
    expect(scored.score).toBe(0);
  });

  it("lists the signals by contribution, strongest first", () => {
    const scored = scoreComplexity(req("Prove the theorem in Python code"), { ...DEFAULT_WEIGHTS, math: 0.9 });
    expect(scored.signals[0]).toBe("math");
  });
});

describe("tierForScore", () => {
  it("takes the highest threshold reached, and the default below all", () => {
    expect(tierForScore(0, thresholds, "small")).toBe("small");
    expect(tierForScore(0.29, thresholds, "small")).toBe("small");
    expect(tierForScore(0.3, thresholds, "small")).toBe("medium");
    expect(tierForScore(0.6, thresholds, "small")).toBe("large");
    expect(tierForScore(1, thresholds, "small")).toBe("large");
  });
});
