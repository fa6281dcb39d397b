import { type ModelVerdict, VerdictParseError } from "./conversation.js";

/**
 * Reads an OpenAI-compatible `/v1/moderations` response (`{ results: [{ flagged, categories: {name: bool} }] }`,
 * one result per input). With `categories`, only those count: a result is unsafe when one of them is true.
 * Without, a result is unsafe when `flagged`. The verdict names every counted category that was true, over all
 * results. Throws VerdictParseError on any other shape.
 */
export function parseModerationResponse(body: unknown, categories?: readonly string[]): ModelVerdict {
  const results = (body as { results?: unknown } | null)?.results;
  if (!Array.isArray(results) || results.length === 0) {
    throw new VerdictParseError("moderation response has no results");
  }
  const named = new Set<string>();
  let unsafe = false;
  for (const r of results as unknown[]) {
    const flagged = (r as { flagged?: unknown }).flagged;
    const cats = (r as { categories?: unknown }).categories;
    if (typeof flagged !== "boolean" || typeof cats !== "object" || cats === null) {
      throw new VerdictParseError("moderation result without flagged and categories");
    }
    const hits = Object.entries(cats as Record<string, unknown>)
      .filter(([name, v]) => v === true && (categories === undefined || categories.includes(name)))
      .map(([name]) => name);
    if (categories === undefined ? flagged : hits.length > 0) {
      unsafe = true;
      for (const h of hits) named.add(h);
    }
  }
  return { unsafe, categories: [...named].sort() };
}
