import type { ChatMessage } from "@tokenmesh/proto/common/v1/chat";

/**
 * A cheap upper-leaning estimate of prompt tokens (≈ 4 characters a token plus per-message overhead, images at a
 * flat 765 tokens like a high-detail 512×512 tile set). Used to hold rate-limit tokens and budget reservations
 * before the model's own count is known; both are corrected with real usage afterwards.
 */
export function estimateInputTokens(messages: ChatMessage[]): number {
  let chars = 0;
  let extra = 3;
  for (const m of messages) {
    extra += 4;
    chars += m.content.length + m.name.length;
    for (const p of m.parts) {
      if (p.text !== undefined) chars += p.text.length;
      else extra += 765;
    }
    for (const t of m.toolCalls) chars += (t.function?.name.length ?? 0) + (t.function?.arguments.length ?? 0);
  }
  return Math.ceil(chars / 4) + extra;
}
