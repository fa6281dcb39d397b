import { type ChatChunk, type ChatDelta, FinishReason, Role, type Usage } from "@tokenmesh/proto/common/v1/chat";

/** A delta with every scalar at its proto default, so callers only set what changed. */
export function delta(fields: Partial<ChatDelta>): ChatDelta {
  return {
    index: 0,
    role: Role.ROLE_UNSPECIFIED,
    content: "",
    toolCalls: [],
    finishReason: FinishReason.FINISH_REASON_UNSPECIFIED,
    refusal: "",
    ...fields,
  };
}

/** The last chunk of every stream: usage and no choices (the Engine contract). */
export function usageChunk(id: string, created: number, model: string, usage: Usage): ChatChunk {
  return { id, created, model, choices: [], usage };
}

export function usage(inputTokens: number, outputTokens: number, cachedTokens: number): Usage {
  return { inputTokens, outputTokens, cachedTokens };
}

/** Unix seconds now, for chunks whose provider gives no creation time. */
export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}
