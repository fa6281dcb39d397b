import type { ModelEntry } from "@tokenmesh/catalog";
import type { ChatChunk, ChatMessage, ChatRequest, EmbedRequest, EmbedResponse } from "@tokenmesh/proto/common/v1/chat";

/** One generation asked of an engine. */
export interface GenerateCall {
  requestId: string;
  /** The catalog entry to run (already resolved). */
  model: ModelEntry;
  request: ChatRequest;
  /** Aborted when the caller cancels or the deadline passes: the engine stops generating / aborts the upstream. */
  signal: AbortSignal;
  /** `RequestContext.priority` (1 interactive, 0 standard, -1 batch): the order of the slot queue. */
  priority?: number;
  /** Whose turn it is in the slot queue: the team, else the key id. */
  tenant?: string;
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
  /** "cpu", "cuda", "vulkan" or "metal". */
  device: string;
  /** Why the model is not ready (e.g. a missing file, no internet for an hf: source). */
  detail?: string;
}

/**
 * A way of running local models (the GGUF engine). Implementations raise only AppError (with `retryable` and
 * `origin` set) so the router can decide on retries without reading messages. Remote providers are not engines of
 * this service: the router calls them in-process through `@tokenmesh/providers`, whose contract suite this engine
 * also passes (services/inference/test/provider-contract.int.test.ts).
 */
export interface Engine {
  readonly kind: "local";
  /**
   * Streams chunks of deltas (text, tool-call deltas, finish reason per choice). The last chunk carries usage
   * and no choices. A stream that breaks or ends without its provider's terminator throws, never ends normally.
   */
  generate(call: GenerateCall): AsyncIterable<ChatChunk>;
  embed(call: EmbedCall): Promise<EmbedResponse>;
  countTokens(model: ModelEntry, messages: ChatMessage[]): Promise<TokenCount>;
  /** Prepares a model (loads its weights). Idempotent. */
  load?(model: ModelEntry): Promise<void>;
  /** Frees a model that left the catalog. */
  unload?(modelId: string): Promise<void>;
  status(model: ModelEntry): ModelStatus;
  close(): Promise<void>;
}
