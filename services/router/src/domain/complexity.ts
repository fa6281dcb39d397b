import { estimateMessageTokens, estimateTextTokens, type TokenizableMessage } from "@tokenmesh/tokens";

/**
 * The request features `auto` routing scores. Each has a strength in [0, 1]; a signal "fires" when its strength is
 * above zero, and contributes `weight × strength` to the score.
 *
 * - `long`: the whole conversation's estimated tokens (from 500, full at 4,000).
 * - `long_turn`: the last user turn's tokens (from 200, full at 1,500).
 * - `turns`: the number of user and assistant turns (from 6, full at 20).
 * - `code`: code fences, source-like lines, or programming words (English and Chinese).
 * - `math`: formulas, LaTeX, and mathematical words (English and Chinese).
 * - `reasoning`: multi-step reasoning asks ("step by step", "analyse", "compare", "为什么", "逐步", …).
 * - `tools`: tools were offered.
 * - `json`: a response format was asked (a JSON schema counts fully, a JSON object half).
 * - `images`: the conversation carries images.
 * - `max_tokens`: a large output was asked for (from 1,000, full at 8,000).
 */
export const SIGNALS = [
  "long",
  "long_turn",
  "turns",
  "code",
  "math",
  "reasoning",
  "tools",
  "json",
  "images",
  "max_tokens",
] as const;

export type Signal = (typeof SIGNALS)[number];

export type SignalWeights = Record<Signal, number>;

/** Weights used for any signal the catalog's `routes.auto.scoring.weights` leaves out. */
export const DEFAULT_WEIGHTS: Readonly<SignalWeights> = {
  long: 0.3,
  long_turn: 0.15,
  turns: 0.1,
  code: 0.45,
  math: 0.45,
  reasoning: 0.35,
  tools: 0.2,
  json: 0.15,
  images: 0.3,
  max_tokens: 0.15,
};

/** The parts of a chat request the scorer reads; proto `ChatRequest` fits. */
export interface ScorableRequest {
  messages: readonly (Omit<TokenizableMessage, "parts"> & {
    /** Proto Role: 1 system, 2 user, 3 assistant, 4 tool, 5 developer. */
    role: number;
    parts?: readonly { text?: string | undefined; imageUrl?: unknown }[];
  })[];
  tools?: readonly unknown[];
  /** Proto ResponseFormatType: 2 json_object, 3 json_schema. */
  responseFormat?: { type: number } | undefined;
  maxTokens?: number | undefined;
}

/** The scorer's verdict: the score, and the signals that fired, strongest contribution first. */
export interface ComplexityScore {
  score: number;
  signals: Signal[];
}

const ROLE_USER = 2;
const ROLE_ASSISTANT = 3;

const CODE_PATTERNS: readonly RegExp[] = [
  /```/,
  /^\s*(def|class|import|from\s+\S+\s+import|function|const|let|var|public|private|#include|package|fn|func)\b/m,
  /\b(SELECT\s+.+\s+FROM|INSERT\s+INTO|CREATE\s+TABLE)\b/i,
  /[;{}]\s*$/m,
  /=>|::|->\s*\w|\(\)\s*\{/,
  /\b(function|regex|stack trace|traceback|compile|compiler|refactor|debug|bug|segfault|exception|typescript|javascript|python|rust|golang|java|kotlin|c\+\+|sql|api|algorithm|unit test|implement)\b/i,
  /(代码|编程|程序|调试|报错|编译|算法|重构|接口|脚本|实现一个|单元测试|数据库)/,
];

const MATH_PATTERNS: readonly RegExp[] = [
  /\\(frac|int|sum|sqrt|lim|prod|partial|alpha|beta|theta|infty)\b/,
  /[∑∫√∞≤≥≠±∂π]/,
  /\b\d+\s*[+\-*/^]\s*\d+\s*(=|\))/,
  /\b[a-z]\s*\^\s*\d|\b\d*[a-z]\s*[+-]\s*\d+\s*=\s*\d+/i,
  /\b(prove|proof|theorem|lemma|integral|derivative|equation|solve for|probability|matrix|eigen\w*|polynomial|logarithm|calculus)\b/i,
  /(证明|定理|积分|导数|微分|方程|求解|概率|矩阵|多项式|对数|函数极限|几何)/,
];

const REASONING_PATTERNS: readonly RegExp[] = [
  /\bstep[- ]by[- ]step\b/i,
  /\b(explain why|reason about|analy[sz]e|compare|trade-?offs?|pros and cons|evaluate|critique|design|architecture|plan|strategy|justify|derive)\b/i,
  /\b(first|then|finally)\b[\s\S]*\b(then|finally|after that)\b/i,
  /(一步一步|逐步|分步|分析|比较|为什么|推理|设计|架构|权衡|优缺点|评估|规划|论证|详细解释)/,
];

/** Strength of a pattern family: one distinct pattern matched is 0.7, two 0.9, three or more 1. */
function patternStrength(text: string, patterns: readonly RegExp[]): number {
  let hits = 0;
  for (const p of patterns) if (p.test(text)) hits++;
  return hits === 0 ? 0 : hits === 1 ? 0.7 : hits === 2 ? 0.9 : 1;
}

/** 0 below `from`, 1 from `full`, linear between. */
function ramp(value: number, from: number, full: number): number {
  if (value <= from) return 0;
  if (value >= full) return 1;
  return (value - from) / (full - from);
}

function textOf(m: ScorableRequest["messages"][number]): string {
  const parts = (m.parts ?? []).flatMap((p) => (p.text !== undefined ? [p.text] : []));
  return [m.content ?? "", ...parts].join("\n");
}

/**
 * Scores how demanding a chat request is, in [0, 1]: the weighted sum of its signals' strengths, capped at 1.
 * Pure and deterministic: the same request and weights always give the same score and signals. Code, math and
 * reasoning are read from the user's turns (the last one counts fully, earlier ones half), so a long system prompt
 * about code does not make every chat "code".
 */
export function scoreComplexity(request: ScorableRequest, weights: Readonly<SignalWeights>): ComplexityScore {
  const strengths = new Map<Signal, number>();
  const userTurns = request.messages.filter((m) => m.role === ROLE_USER);
  const last = userTurns.at(-1);
  const lastText = last === undefined ? "" : textOf(last);
  const earlierText = userTurns.slice(0, -1).map(textOf).join("\n");

  strengths.set("long", ramp(estimateMessageTokens(request.messages), 500, 4_000));
  strengths.set("long_turn", ramp(estimateTextTokens(lastText), 200, 1_500));
  const turns = request.messages.filter((m) => m.role === ROLE_USER || m.role === ROLE_ASSISTANT).length;
  strengths.set("turns", ramp(turns, 5, 20));
  const family = (patterns: readonly RegExp[]) =>
    Math.max(patternStrength(lastText, patterns), patternStrength(earlierText, patterns) / 2);
  strengths.set("code", family(CODE_PATTERNS));
  strengths.set("math", family(MATH_PATTERNS));
  strengths.set("reasoning", family(REASONING_PATTERNS));
  strengths.set("tools", (request.tools?.length ?? 0) > 0 ? 1 : 0);
  const format = request.responseFormat?.type ?? 0;
  strengths.set("json", format === 3 ? 1 : format === 2 ? 0.5 : 0);
  const images = request.messages.some((m) => (m.parts ?? []).some((p) => p.imageUrl !== undefined));
  strengths.set("images", images ? 1 : 0);
  strengths.set("max_tokens", ramp(request.maxTokens ?? 0, 1_000, 8_000));

  const contributions = SIGNALS.map((s) => ({ s, c: (weights[s] ?? 0) * (strengths.get(s) ?? 0) })).filter(
    (x) => x.c > 0,
  );
  contributions.sort((a, b) => b.c - a.c || SIGNALS.indexOf(a.s) - SIGNALS.indexOf(b.s));
  const sum = contributions.reduce((n, x) => n + x.c, 0);
  // Rounded so that the reason string, the tier boundary and the tests agree to the printed digits.
  const score = Math.round(Math.min(1, sum) * 100) / 100;
  return { score, signals: contributions.map((x) => x.s) };
}

/**
 * The tier a score picks: the tier with the highest threshold at or below the score, or `defaultTier` when the
 * score is below every threshold. `thresholds` maps tier names to the lowest score that selects them.
 */
export function tierForScore(score: number, thresholds: ReadonlyMap<string, number>, defaultTier: string): string {
  let best: { tier: string; min: number } | undefined;
  for (const [tier, min] of thresholds)
    if (score >= min && (best === undefined || min > best.min)) best = { tier, min };
  return best?.tier ?? defaultTier;
}
