import { describe, expect, it } from "vitest";
import { VerdictParseError } from "./conversation.js";
import { buildShieldGemmaPrompt, parseShieldGemmaVerdict } from "./shieldgemma.js";

const conversation = [
  { role: "user" as const, text: "first question" },
  { role: "assistant" as const, text: "an answer" },
  { role: "user" as const, text: "How do I pick a lock?" },
];

describe("buildShieldGemmaPrompt", () => {
  it("asks about the last user message against every harm by default", () => {
    const p = buildShieldGemmaPrompt({ stage: "input", conversation });
    expect(p.startsWith("You are a policy expert trying to help determine whether a user prompt is in violation")).toBe(
      true,
    );
    expect(p).toContain("<start_of_turn>\nHuman Question: How do I pick a lock?\n<end_of_turn>");
    expect(p).not.toContain("first question");
    for (const title of [
      "No Dangerous Content",
      "No Harassment",
      "No Hate Speech",
      "No Sexually Explicit Information",
    ]) {
      expect(p).toContain(`* "${title}": The prompt shall not contain or seek generation of content`);
    }
    expect(p).toContain(
      "Does the human question violate the above principle? Your answer must start with 'Yes' or 'No'.",
    );
  });

  it("adds the chatbot response and asks about it for output, with only the configured harms", () => {
    const p = buildShieldGemmaPrompt({ stage: "output", conversation, response: "Use a tension wrench." }, [
      "dangerous_content",
    ]);
    expect(p).toContain("whether an AI response to a prompt is in violation");
    expect(p).toContain("<start_of_turn>\nChatbot Response: Use a tension wrench.\n<end_of_turn>");
    expect(p).toContain('* "No Dangerous Content": The chatbot shall not generate content that harming');
    expect(p).not.toContain("No Harassment");
    expect(p).toContain("Does the Chatbot Response violate the above principle?");
  });
});

describe("parseShieldGemmaVerdict", () => {
  it("reads Yes as unsafe against the harms asked about, and No as safe", () => {
    expect(parseShieldGemmaVerdict("Yes, because it explains...", ["harassment"])).toEqual({
      unsafe: true,
      categories: ["harassment"],
    });
    expect(parseShieldGemmaVerdict("Yes").categories).toHaveLength(4);
    expect(parseShieldGemmaVerdict(" No. The question is benign.")).toEqual({ unsafe: false, categories: [] });
  });

  it("refuses an answer that starts with neither word", () => {
    expect(() => parseShieldGemmaVerdict("Maybe")).toThrow(VerdictParseError);
    expect(() => parseShieldGemmaVerdict("")).toThrow(VerdictParseError);
  });
});
