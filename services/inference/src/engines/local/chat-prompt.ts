import { type ChatMessage, Role } from "@tokenmesh/proto/common/v1/chat";
import { AppError } from "@tokenmesh/runtime";
import type { ChatHistoryItem, ChatWrapper, LlamaModel, Token } from "node-llama-cpp";

/** A chat request rendered with the model's template, ready to evaluate. */
export interface RenderedPrompt {
  /** Exactly the tokens fed to the model (BOS and template tokens included): the request's input tokens. */
  tokens: Token[];
  /** Plain-text stop triggers of the chat template (token-level triggers are handled as `stopTokens`). */
  stopStrings: string[];
  /** Single special tokens that end the turn besides the model's own end-of-generation tokens. */
  stopTokens: Set<Token>;
}

/** The text of a message: `content`, or its text parts joined by newlines. Images are refused. */
export function messageText(m: ChatMessage, modelId: string): string {
  if (m.parts.length === 0) return m.content;
  return m.parts
    .map((p) => {
      if (p.imageUrl !== undefined) {
        throw new AppError("INVALID_ARGUMENT", `model ${modelId} does not accept images`, {
          param: "messages",
          reason: "unsupported_content",
        });
      }
      return p.text ?? "";
    })
    .join("\n");
}

/**
 * Maps OpenAI-style messages onto node-llama-cpp's chat history. System and developer messages become system
 * turns; tool results, which this engine's templates have no slot for, become user turns that say so; an assistant's
 * tool calls are spelled out as text so the conversation keeps its meaning.
 */
export function toChatHistory(messages: readonly ChatMessage[], modelId: string): ChatHistoryItem[] {
  const history: ChatHistoryItem[] = [];
  for (const m of messages) {
    const text = messageText(m, modelId);
    switch (m.role) {
      case Role.ROLE_SYSTEM:
      case Role.ROLE_DEVELOPER:
        history.push({ type: "system", text });
        break;
      case Role.ROLE_ASSISTANT: {
        const calls = m.toolCalls.map(
          (c) => `[tool call ${c.id}: ${c.function?.name ?? ""}(${c.function?.arguments ?? ""})]`,
        );
        history.push({ type: "model", response: [[text, ...calls].filter((s) => s.length > 0).join("\n")] });
        break;
      }
      case Role.ROLE_TOOL:
        history.push({ type: "user", text: `[tool result${m.toolCallId ? ` ${m.toolCallId}` : ""}]\n${text}` });
        break;
      default:
        history.push({ type: "user", text });
    }
  }
  return history;
}

/**
 * Renders messages with the model's chat template, with an open assistant turn at the end, and tokenizes the
 * result. User text is tokenized as plain text, so a message cannot smuggle in template control tokens.
 */
export function renderPrompt(
  model: LlamaModel,
  wrapper: ChatWrapper,
  messages: readonly ChatMessage[],
  modelId: string,
): RenderedPrompt {
  const chatHistory = toChatHistory(messages, modelId);
  chatHistory.push({ type: "model", response: [] });
  const state = wrapper.generateContextState({ chatHistory });
  const tokens = state.contextText.tokenize(model.tokenizer);
  const stopStrings: string[] = [];
  const stopTokens = new Set<Token>();
  for (const trigger of state.stopGenerationTriggers) {
    const values = trigger.values;
    if (values.every((v) => typeof v === "string")) {
      const s = values.join("");
      if (s.length > 0) stopStrings.push(s);
      continue;
    }
    const t = trigger.tokenize(model.tokenizer);
    if (t.length === 1 && t[0] !== undefined) stopTokens.add(t[0]);
  }
  return { tokens, stopStrings, stopTokens };
}
