import { describe, expect, it } from "vitest";
import { ChatCompletionBody } from "./openai.schema.js";

/** A JSON Schema nested `depth` levels deep, as the JSON text a client sends (parsed, like the gateway does). */
const deepSchema = (depth: number) =>
  JSON.parse(`${'{"type":"object","properties":{"a":'.repeat(depth)}{"type":"string"}${"}}".repeat(depth)}`);

const body = (extra: Record<string, unknown>) => ({
  model: "m",
  messages: [{ role: "user", content: "hi" }],
  ...extra,
});

describe("ChatCompletionBody", () => {
  it("accepts tool parameters and response schemas of any real depth", () => {
    const tools = [{ type: "function", function: { name: "f", parameters: deepSchema(20) } }];
    expect(ChatCompletionBody.safeParse(body({ tools })).success).toBe(true);
  });

  it("refuses a schema nested so deep that encoding it down the mesh would overflow the stack", () => {
    const tools = [{ type: "function", function: { name: "f", parameters: deepSchema(50_000) } }];
    const r = ChatCompletionBody.safeParse(body({ tools }));
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]?.path).toEqual(["tools", 0, "function", "parameters"]);
    const format = { type: "json_schema", json_schema: { name: "x", schema: deepSchema(50_000) } };
    expect(ChatCompletionBody.safeParse(body({ response_format: format })).success).toBe(false);
  });
});
