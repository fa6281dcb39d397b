import {
  type ChatChoice,
  type ChatChunk,
  type ChatResponse,
  FinishReason,
  Role,
  type ToolCall,
  type Usage,
} from "@tokenmesh/proto/common/v1/chat";

/**
 * Folds streamed chunks into one response: text is concatenated per choice, tool-call deltas are merged by index
 * (id/name from the first delta, arguments appended), the last finish reason and usage win.
 */
export class ResponseAccumulator {
  private readonly choices = new Map<
    number,
    { content: string; refusal: string; tools: Map<number, ToolCall>; finish: FinishReason }
  >();
  usage: Usage | undefined;
  id = "";
  created = 0;
  model = "";

  add(chunk: ChatChunk): void {
    this.id ||= chunk.id;
    this.created ||= chunk.created;
    this.model ||= chunk.model;
    if (chunk.usage) this.usage = chunk.usage;
    for (const d of chunk.choices) {
      let c = this.choices.get(d.index);
      if (!c) {
        c = { content: "", refusal: "", tools: new Map(), finish: FinishReason.FINISH_REASON_UNSPECIFIED };
        this.choices.set(d.index, c);
      }
      c.content += d.content;
      c.refusal += d.refusal;
      if (d.finishReason !== FinishReason.FINISH_REASON_UNSPECIFIED) c.finish = d.finishReason;
      for (const t of d.toolCalls) {
        const existing = c.tools.get(t.index);
        if (existing) {
          existing.function!.arguments += t.function?.arguments ?? "";
          if (t.function?.name && !existing.function!.name) existing.function!.name = t.function.name;
          if (t.id && !existing.id) existing.id = t.id;
        } else {
          c.tools.set(t.index, {
            id: t.id,
            type: t.type || "function",
            function: { name: t.function?.name ?? "", arguments: t.function?.arguments ?? "" },
          });
        }
      }
    }
  }

  /** The text generated so far for a choice (the guard filters it as one piece for non-streamed responses). */
  text(index = 0): string {
    return this.choices.get(index)?.content ?? "";
  }

  setText(index: number, text: string): void {
    const c = this.choices.get(index);
    if (c) c.content = text;
  }

  result(provider: string, cacheHit: boolean): ChatResponse {
    const choices: ChatChoice[] = [...this.choices.entries()]
      .sort(([a], [b]) => a - b)
      .map(([index, c]) => ({
        index,
        message: {
          role: Role.ROLE_ASSISTANT,
          content: c.content,
          parts: [],
          name: "",
          toolCalls: [...c.tools.entries()].sort(([a], [b]) => a - b).map(([, t]) => t),
          toolCallId: "",
          refusal: c.refusal,
        },
        finishReason: c.finish === FinishReason.FINISH_REASON_UNSPECIFIED ? FinishReason.FINISH_REASON_STOP : c.finish,
      }));
    return {
      id: this.id,
      created: this.created,
      model: this.model,
      choices,
      usage: this.usage ?? { inputTokens: 0, outputTokens: 0, cachedTokens: 0 },
      provider,
      cacheHit,
    };
  }
}
