import type { AnthropicModelEntry, ModelEntry, OpenAIModelEntry } from "@tokenmesh/catalog";
import type { ChatChunk, ChatMessage, ChatRequest, EmbedRequest, EmbedResponse } from "@tokenmesh/proto/common/v1/chat";

/** A catalog entry served by a remote provider (anything but `engine: local`). */
export type RemoteModelEntry = OpenAIModelEntry | AnthropicModelEntry;

/** The remote engine kinds, as the catalog's `engine` field names them. */
export type ProviderKind = RemoteModelEntry["engine"];

/** Whether a catalog entry is served by a remote provider (the router calls these in-process). */
export function isRemoteModel(entry: ModelEntry): entry is RemoteModelEntry {
  return entry.engine !== "local";
}

/** One generation asked of an engine. */
export interface GenerateCall {
  requestId: string;
  /** The catalog entry to run (already resolved). */
  model: ModelEntry;
  request: ChatRequest;
  /** Aborted when the caller cancels or the deadline passes: the engine aborts the upstream request. */
  signal: AbortSignal;
}

export interface EmbedCall {
  requestId: string;
  model: ModelEntry;
  request: EmbedRequest;
  signal: AbortSignal;
}

export interface TokenCount {
  tokens: number;
  /** False when estimated rather than counted by the model's own tokenizer. */
  exact: boolean;
}

export interface ModelStatus {
  ready: boolean;
  /** "remote" for provider models. */
  device: string;
  /** Why the model is not ready (e.g. its key env var is unset). */
  detail?: string;
}

/**
 * A remote provider engine (OpenAI-compatible, Anthropic). Implementations raise only AppError (with `retryable`,
 * `origin: "upstream"` and `upstreamStatus` set) so the router can decide on retries without reading messages.
 * The contract every engine passes is packages/providers/test/provider-contract.int.test.ts.
 */
export interface ProviderEngine {
  readonly kind: ProviderKind;
  /**
   * Streams chunks of deltas (text, tool-call deltas, finish reason per choice). The last chunk carries usage
   * (and, when streaming, no choices). A stream that breaks or ends without its provider's terminator throws
   * UNAVAILABLE, never ends normally. Aborting `call.signal`, or stopping iteration, aborts the upstream request.
   */
  generate(call: GenerateCall): AsyncIterable<ChatChunk>;
  embed(call: EmbedCall): Promise<EmbedResponse>;
  /** An estimate (`exact: false`): providers' own counts come back with usage. */
  countTokens(model: ModelEntry, messages: ChatMessage[]): Promise<TokenCount>;
  /** Checks the key env var is set (FAILED_PRECONDITION otherwise); makes no network call. */
  load(model: ModelEntry): Promise<void>;
  /** Ready when the key is present (or none is needed); reachability is the router's breakers' concern. */
  status(model: ModelEntry): ModelStatus;
  close(): Promise<void>;
}
