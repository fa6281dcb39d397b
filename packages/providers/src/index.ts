/**
 * `@tokenmesh/providers`: the remote model providers (OpenAI-compatible, Anthropic) the router calls in-process.
 * Each engine translates a proto ChatRequest to its provider's wire format, calls it over a pooled HTTP client,
 * parses its JSON or SSE answer back into ChatChunks (usage on the last one) and maps every failure to an AppError
 * with `retryable`, `origin: "upstream"` and the upstream status.
 */
export { AnthropicEngine } from "./anthropic/anthropic.engine.js";
export {
  type EmbedCall,
  type GenerateCall,
  isRemoteModel,
  type ModelStatus,
  type ProviderEngine,
  type ProviderKind,
  type RemoteModelEntry,
  type TokenCount,
} from "./engine.js";
export {
  errorFromStatus,
  errorFromStreamEvent,
  type HeaderBag,
  missingKeyError,
  type ProviderError,
  parseProviderError,
  parseRetryAfter,
} from "./http/errors.js";
export { UpstreamHttpClient, type UpstreamHttpClientOptions } from "./http/http-client.js";
export { envSecret, type GetSecret } from "./http/secrets.js";
export { readSse, type SseEvent, SseParser } from "./http/sse.js";
export type { UpstreamEngineOptions } from "./http/upstream-options.js";
export { OpenAIEngine } from "./openai/openai.engine.js";
export { Providers, type ProvidersOptions } from "./providers.js";
