import { type ChatChunk, type ChatDelta, Role, type Usage } from "@tokenmesh/proto/common/v1/chat";
import { delta } from "../http/chunks.js";
import { errorFromStreamEvent, providerErrorFromJson } from "../http/errors.js";
import { mapStopReason, mapUsage } from "./anthropic.mapping.js";
import type { AnthropicStreamEvent, AnthropicUsage } from "./anthropic.types.js";

/**
 * Translates a Messages API event stream into ChatChunks, one event at a time. Content blocks map to one choice
 * (index 0): text deltas to content, each `tool_use` block to a tool call numbered in order of appearance (its
 * first delta carries id and name, `input_json_delta`s append arguments). `error` events throw the mapped AppError.
 * Usage is accumulated from `message_start` and `message_delta` (whose counts are cumulative).
 */
export class AnthropicStreamTranslator {
  /** True once `message_stop` arrived: only then did the stream end normally. */
  done = false;
  id = "";
  model: string;
  private readonly toolIndexOfBlock = new Map<number, number>();
  private tools = 0;
  private readonly usage: AnthropicUsage = {};

  constructor(
    fallbackModel: string,
    readonly created: number,
    private readonly provider: string,
  ) {
    this.model = fallbackModel;
  }

  /** The chunk this event produces, if any. */
  onEvent(ev: AnthropicStreamEvent): ChatChunk | undefined {
    switch (ev.type) {
      case "message_start": {
        const m = ev.message ?? {};
        if (m.id) this.id = m.id;
        if (m.model) this.model = m.model;
        if (m.usage) this.addUsage(m.usage);
        return this.chunk(delta({ role: Role.ROLE_ASSISTANT }));
      }
      case "content_block_start": {
        const b = ev.content_block ?? {};
        if (b.type === "text" && b.text) return this.chunk(delta({ content: b.text }));
        if (b.type === "tool_use") {
          const index = this.tools++;
          this.toolIndexOfBlock.set(ev.index ?? -1, index);
          // Streamed tool_use blocks start with `input: {}` and send the real input as input_json_delta.
          const input = b.input !== undefined && !isEmptyObject(b.input) ? JSON.stringify(b.input) : "";
          return this.chunk(
            delta({
              toolCalls: [
                { index, id: b.id ?? "", type: "function", function: { name: b.name ?? "", arguments: input } },
              ],
            }),
          );
        }
        return undefined;
      }
      case "content_block_delta": {
        const d = ev.delta ?? {};
        if (d.type === "text_delta" && d.text) return this.chunk(delta({ content: d.text }));
        if (d.type === "input_json_delta" && d.partial_json) {
          const index = this.toolIndexOfBlock.get(ev.index ?? -1);
          if (index === undefined) return undefined;
          return this.chunk(
            delta({ toolCalls: [{ index, id: "", type: "", function: { name: "", arguments: d.partial_json } }] }),
          );
        }
        // thinking, signature and citation deltas have no place in the OpenAI-shaped chunk.
        return undefined;
      }
      case "message_delta": {
        if (ev.usage) this.addUsage(ev.usage);
        const reason = ev.delta?.stop_reason;
        return reason ? this.chunk(delta({ finishReason: mapStopReason(reason) })) : undefined;
      }
      case "message_stop":
        this.done = true;
        return undefined;
      case "error":
        throw errorFromStreamEvent(this.provider, providerErrorFromJson(ev));
      default:
        // ping, content_block_stop, and event types Anthropic may add later (its docs ask clients to ignore them).
        return undefined;
    }
  }

  /** Usage so far, in our terms (see mapUsage). */
  finalUsage(): Usage {
    return mapUsage(this.usage);
  }

  private addUsage(u: AnthropicUsage): void {
    // Counts are cumulative and message_delta may omit or null fields already given by message_start.
    for (const k of [
      "input_tokens",
      "output_tokens",
      "cache_creation_input_tokens",
      "cache_read_input_tokens",
    ] as const) {
      const v = u[k];
      if (typeof v === "number") this.usage[k] = v;
    }
  }

  private chunk(d: ChatDelta): ChatChunk {
    return { id: this.id, created: this.created, model: this.model, choices: [d] };
  }
}

function isEmptyObject(v: unknown): boolean {
  return typeof v === "object" && v !== null && Object.keys(v).length === 0;
}
