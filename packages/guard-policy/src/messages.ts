/**
 * The text slots of a chat message, for any message shaped like the proto `ChatMessage` (the guard service's
 * gRPC handler and the gateway both pass theirs straight in).
 */
export interface SlottedMessage {
  content: string;
  parts: readonly { text?: string | undefined }[];
  toolCalls: readonly { function?: { arguments: string } | undefined }[];
}

/**
 * A message's texts in a fixed order — content, then each text part, then each tool call's arguments — and its
 * image count (parts without text). {@link withMessageTexts} writes texts back in the same order.
 */
export function messageTexts(m: SlottedMessage): { texts: string[]; images: number } {
  const texts = [m.content];
  let images = 0;
  for (const p of m.parts) {
    if (p.text !== undefined) texts.push(p.text);
    else images++;
  }
  for (const c of m.toolCalls) texts.push(c.function?.arguments ?? "");
  return { texts, images };
}

/** A copy of `m` with its text slots replaced, in {@link messageTexts}' order; missing texts become "". */
export function withMessageTexts<M extends SlottedMessage>(m: M, texts: readonly string[]): M {
  let i = 0;
  const next = () => texts[i++] ?? "";
  const content = next();
  const parts = m.parts.map((p) => (p.text !== undefined ? { ...p, text: next() } : p));
  const toolCalls = m.toolCalls.map((c) => {
    const args = next();
    return c.function ? { ...c, function: { ...c.function, arguments: args } } : c;
  });
  return { ...m, content, parts, toolCalls };
}
