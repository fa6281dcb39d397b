import { describe, expect, it } from "vitest";
import { messageTexts, withMessageTexts } from "./messages.js";

describe("messageTexts", () => {
  const m = {
    role: 1,
    content: "hello",
    parts: [{ text: "part" }, { imageUrl: { url: "data:" } }, { text: "more" }],
    toolCalls: [{ id: "c1", function: { name: "f", arguments: '{"a":1}' } }],
  };

  it("lists content, text parts and tool arguments in order, and counts images", () => {
    expect(messageTexts(m)).toEqual({ texts: ["hello", "part", "more", '{"a":1}'], images: 1 });
  });

  it("writes texts back to the same slots and keeps everything else", () => {
    const out = withMessageTexts(m, ["H", "P", "M", "{}"]);
    expect(out).toEqual({
      role: 1,
      content: "H",
      parts: [{ text: "P" }, { imageUrl: { url: "data:" } }, { text: "M" }],
      toolCalls: [{ id: "c1", function: { name: "f", arguments: "{}" } }],
    });
    expect(m.content).toBe("hello");
  });
});
