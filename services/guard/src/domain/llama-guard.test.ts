import { describe, expect, it } from "vitest";
import { VerdictParseError } from "./conversation.js";
import { buildLlamaGuardPrompt, parseLlamaGuardVerdict } from "./llama-guard.js";

const conversation = [
  { role: "user" as const, text: "How do I bake bread?" },
  { role: "assistant" as const, text: "Mix flour and water." },
  { role: "user" as const, text: "And then?" },
];

describe("buildLlamaGuardPrompt", () => {
  it("lists the 14 hazard categories and the conversation, and judges the last User message for input", () => {
    const p = buildLlamaGuardPrompt({ stage: "input", conversation });
    expect(p.startsWith("Task: Check if there is unsafe content in 'User' messages in conversations")).toBe(true);
    expect(p).toContain("<BEGIN UNSAFE CONTENT CATEGORIES>\nS1: Violent Crimes.\nS2: Non-Violent Crimes.");
    expect(p).toContain("S13: Elections.\nS14: Code Interpreter Abuse.\n<END UNSAFE CONTENT CATEGORIES>");
    expect(p).toContain(
      "<BEGIN CONVERSATION>\n\nUser: How do I bake bread?\n\nAgent: Mix flour and water.\n\nUser: And then?\n\n<END CONVERSATION>",
    );
    expect(p).toContain("Provide your safety assessment for ONLY THE LAST User message in the above conversation:");
    expect(p).toContain(" - First line must read 'safe' or 'unsafe'.");
    expect(p.endsWith("a second line must include a comma-separated list of violated categories.")).toBe(true);
  });

  it("appends the answer as the last Agent turn and judges it for output", () => {
    const p = buildLlamaGuardPrompt({ stage: "output", conversation, response: "Knead it." });
    expect(p).toContain("unsafe content in 'Agent' messages");
    expect(p).toContain("User: And then?\n\nAgent: Knead it.\n\n<END CONVERSATION>");
    expect(p).toContain("ONLY THE LAST Agent message");
  });

  it("lists only the configured categories, with their original codes", () => {
    const p = buildLlamaGuardPrompt({ stage: "input", conversation }, ["S1", "S10"]);
    expect(p).toContain("<BEGIN UNSAFE CONTENT CATEGORIES>\nS1: Violent Crimes.\nS10: Hate.\n<END UNSAFE");
    expect(p).not.toContain("S2:");
  });
});

describe("parseLlamaGuardVerdict", () => {
  it("reads safe", () => {
    expect(parseLlamaGuardVerdict("safe")).toEqual({ unsafe: false, categories: [] });
    expect(parseLlamaGuardVerdict("\n\n safe \n")).toEqual({ unsafe: false, categories: [] });
  });

  it("reads unsafe with its categories", () => {
    expect(parseLlamaGuardVerdict("unsafe\nS1,S10")).toEqual({ unsafe: true, categories: ["S1", "S10"] });
    expect(parseLlamaGuardVerdict("\nunsafe\ns2, S14 ,S2")).toEqual({ unsafe: true, categories: ["S2", "S14"] });
  });

  it("reads unsafe without a category line", () => {
    expect(parseLlamaGuardVerdict("unsafe")).toEqual({ unsafe: true, categories: [] });
  });

  it("refuses anything else", () => {
    expect(() => parseLlamaGuardVerdict("I cannot help with that")).toThrow(VerdictParseError);
    expect(() => parseLlamaGuardVerdict("")).toThrow(VerdictParseError);
    expect(() => parseLlamaGuardVerdict("unsafety\nS1")).toThrow(VerdictParseError);
  });
});
