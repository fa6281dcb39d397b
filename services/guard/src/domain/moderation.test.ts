import { describe, expect, it } from "vitest";
import { VerdictParseError } from "./conversation.js";
import { parseModerationResponse } from "./moderation.js";

const result = (flagged: boolean, categories: Record<string, boolean>) => ({
  flagged,
  categories,
  category_scores: Object.fromEntries(Object.entries(categories).map(([k, v]) => [k, v ? 0.9 : 0.01])),
});

describe("parseModerationResponse", () => {
  it("is unsafe when a result is flagged, naming its true categories", () => {
    const body = {
      id: "modr-1",
      model: "omni-moderation-latest",
      results: [result(false, { violence: false }), result(true, { violence: true, "harassment/threatening": true })],
    };
    expect(parseModerationResponse(body)).toEqual({ unsafe: true, categories: ["harassment/threatening", "violence"] });
  });

  it("is safe when nothing is flagged", () => {
    expect(parseModerationResponse({ results: [result(false, { violence: false })] })).toEqual({
      unsafe: false,
      categories: [],
    });
  });

  it("counts only the configured categories when given", () => {
    const body = { results: [result(true, { sexual: true, violence: false })] };
    expect(parseModerationResponse(body, ["violence"])).toEqual({ unsafe: false, categories: [] });
    expect(parseModerationResponse(body, ["sexual", "violence"])).toEqual({ unsafe: true, categories: ["sexual"] });
  });

  it("refuses other shapes", () => {
    expect(() => parseModerationResponse({ error: { message: "bad" } })).toThrow(VerdictParseError);
    expect(() => parseModerationResponse({ results: [] })).toThrow(VerdictParseError);
    expect(() => parseModerationResponse({ results: [{ flagged: "yes" }] })).toThrow(VerdictParseError);
    expect(() => parseModerationResponse(null)).toThrow(VerdictParseError);
  });
});
