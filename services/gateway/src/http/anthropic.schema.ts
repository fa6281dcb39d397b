import { z } from "zod";

// The Anthropic Messages API request bodies (`POST /v1/messages` and `/v1/messages/count_tokens`, API version
// 2023-06-01), validated at the edge. Unknown top-level fields are ignored (service_tier, container, mcp_servers…);
// content blocks and tools the mesh cannot carry to every model are refused by name rather than dropped.
// `cache_control` is accepted everywhere Anthropic accepts it and not forwarded (see anthropic.mapping.ts).

/**
 * The API version whose SSE event names and body shapes this module speaks. Later versions only add to it, so a
 * client asking for a later one (the SDK sends its own date) is served; the earlier 2023-01-01 streamed differently
 * and is refused.
 */
export const ANTHROPIC_VERSION = "2023-06-01";

/**
 * The version a request is served under: its `anthropic-version` if that is a date no earlier than
 * {@link ANTHROPIC_VERSION}, ANTHROPIC_VERSION when absent; undefined for anything else (an error).
 */
export function servedVersion(asked: string | string[] | undefined): string | undefined {
  if (asked === undefined) return ANTHROPIC_VERSION;
  if (typeof asked !== "string" || !/^\d{4}-\d{2}-\d{2}$/.test(asked)) return undefined;
  return asked >= ANTHROPIC_VERSION ? asked : undefined;
}

const CacheControl = z.object({ type: z.literal("ephemeral"), ttl: z.enum(["5m", "1h"]).optional() }).nullish();

const TextBlock = z.object({
  type: z.literal("text"),
  text: z.string(),
  cache_control: CacheControl,
  citations: z.array(z.unknown()).nullish(),
});

const MEDIA_TYPES = ["image/jpeg", "image/png", "image/gif", "image/webp"] as const;
const ImageSource = z.discriminatedUnion("type", [
  z.object({ type: z.literal("base64"), media_type: z.enum(MEDIA_TYPES), data: z.string().min(1) }),
  z.object({ type: z.literal("url"), url: z.url({ protocol: /^https?$/ }) }),
]);
const ImageBlock = z.object({ type: z.literal("image"), source: ImageSource, cache_control: CacheControl });

const ToolUseBlock = z.object({
  type: z.literal("tool_use"),
  id: z.string().min(1),
  name: z.string().min(1),
  input: z.record(z.string(), z.unknown()),
  cache_control: CacheControl,
});

const ToolResultBlock = z.object({
  type: z.literal("tool_result"),
  tool_use_id: z.string().min(1),
  content: z.union([z.string(), z.array(z.discriminatedUnion("type", [TextBlock, ImageBlock]))]).optional(),
  is_error: z.boolean().optional(),
  cache_control: CacheControl,
});

// Extended-thinking blocks a client replays from an earlier answer: accepted and left out (the mesh never asks for
// thinking, and Anthropic ignores them then too).
const ThinkingBlock = z.object({ type: z.literal("thinking"), thinking: z.string(), signature: z.string().optional() });
const RedactedThinkingBlock = z.object({ type: z.literal("redacted_thinking"), data: z.string() });

const BLOCK_TYPES = ["text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking"];
const ContentBlock = z.discriminatedUnion(
  "type",
  [TextBlock, ImageBlock, ToolUseBlock, ToolResultBlock, ThinkingBlock, RedactedThinkingBlock],
  {
    error: (issue) =>
      issue.code === "invalid_union" && issue.note === "No matching discriminator"
        ? `content block type '${String((issue.input as { type?: unknown } | undefined)?.type)}' is not supported (supported: ${BLOCK_TYPES.join(", ")})`
        : undefined,
  },
);
export type ContentBlock = z.infer<typeof ContentBlock>;

const Message = z.object({
  // "system" in the conversation: newer API versions of the SDK allow a system turn in place.
  role: z.enum(["user", "assistant", "system"]),
  content: z.union([z.string(), z.array(ContentBlock)]),
});
export type AnthropicMessageParam = z.infer<typeof Message>;

const Tool = z
  .object({
    // Custom tools only: Anthropic's server tools (bash_…, web_search_…, text_editor_…) run at Anthropic and mean
    // nothing to the other models of the catalog.
    type: z.string().nullish(),
    name: z.string().regex(/^[a-zA-Z0-9_-]{1,128}$/, "tool names are 1-128 of a-z, A-Z, 0-9, _ and -"),
    description: z.string().optional(),
    input_schema: z.looseObject({ type: z.literal("object") }).optional(),
    cache_control: CacheControl,
  })
  .superRefine((t, ctx) => {
    if (t.type != null && t.type !== "custom") {
      ctx.addIssue({
        code: "custom",
        path: ["type"],
        message: `server tool '${t.type}' is not supported; only custom tools (name, description, input_schema)`,
      });
    } else if (t.input_schema === undefined) {
      ctx.addIssue({ code: "custom", path: ["input_schema"], message: "Field required" });
    }
  });

const disableParallel = { disable_parallel_tool_use: z.boolean().optional() };
const ToolChoice = z.discriminatedUnion("type", [
  z.object({ type: z.literal("auto"), ...disableParallel }),
  z.object({ type: z.literal("any"), ...disableParallel }),
  z.object({ type: z.literal("tool"), name: z.string().min(1), ...disableParallel }),
  z.object({ type: z.literal("none") }),
]);

/**
 * Accepted (enabled, disabled, adaptive, …) so that clients which always send it work, and not forwarded: the mesh
 * does not ask models to think.
 */
const Thinking = z.looseObject({ type: z.string() });

/**
 * `effort` is a hint and is not forwarded; `format` (JSON outputs) is a promise about the answer and is carried as
 * the request's JSON-schema response format.
 */
const OutputConfig = z.object({
  effort: z.string().nullish(),
  format: z.object({ type: z.literal("json_schema"), schema: z.record(z.string(), z.unknown()) }).nullish(),
});

/** What `count_tokens` takes: the prompt half of a Messages request. */
export const CountTokensBody = z.object({
  model: z.string().min(1),
  messages: z.array(Message).min(1),
  system: z.union([z.string(), z.array(TextBlock)]).optional(),
  tools: z.array(Tool).optional(),
  tool_choice: ToolChoice.optional(),
  thinking: Thinking.optional(),
});
export type CountTokensBody = z.infer<typeof CountTokensBody>;

export const MessagesBody = CountTokensBody.extend({
  // Required, as Anthropic requires it.
  max_tokens: z.number().int().min(1),
  stop_sequences: z.array(z.string()).optional(),
  temperature: z.number().min(0).max(1).optional(),
  top_p: z.number().min(0).max(1).optional(),
  top_k: z.number().int().min(0).optional(),
  stream: z.boolean().optional(),
  metadata: z.object({ user_id: z.string().max(256).nullish() }).nullish(),
  output_config: OutputConfig.optional(),
});
export type MessagesBody = z.infer<typeof MessagesBody>;

/** The first validation problem as Anthropic words it: `<path>: <message>` (e.g. `max_tokens: Field required`). */
export function firstIssue(error: z.ZodError): { message: string; param: string } {
  const { issue, path } = deepest(error.issues[0]!, []);
  const param = path.map(String).join(".");
  const missing = issue.code === "invalid_type" && issue.message.endsWith("received undefined");
  return { message: `${param || "body"}: ${missing ? "Field required" : issue.message}`, param };
}

/**
 * Inside a union (a string or a list of blocks), the problem of the branch that got furthest: "messages.0.content.0:
 * content blocks of this type are not supported" says more than "messages.0.content: Invalid input".
 */
function deepest(issue: z.core.$ZodIssue, prefix: PropertyKey[]): { issue: z.core.$ZodIssue; path: PropertyKey[] } {
  const path = [...prefix, ...issue.path];
  if (issue.code !== "invalid_union" || issue.errors.length === 0) return { issue, path };
  let best: { issue: z.core.$ZodIssue; path: PropertyKey[] } | undefined;
  for (const branch of issue.errors) {
    const first = branch[0];
    if (first === undefined) continue;
    const found = deepest(first, path);
    if (best === undefined || found.path.length > best.path.length) best = found;
  }
  return best ?? { issue, path };
}
