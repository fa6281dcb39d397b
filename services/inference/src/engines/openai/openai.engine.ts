import type { ModelEntry, OpenAIModelEntry } from "@tokenmesh/catalog";
import type { ChatChunk, ChatMessage, EmbedResponse, Usage } from "@tokenmesh/proto/common/v1/chat";
import { AppError } from "@tokenmesh/runtime";
import type { EmbedCall, Engine, GenerateCall, ModelStatus, TokenCount } from "../engine.js";
import { nowSeconds, usage, usageChunk } from "../http/chunks.js";
import { errorFromStreamEvent, malformedError, providerErrorFromJson } from "../http/errors.js";
import { estimateMessageTokens } from "../http/estimate.js";
import { UpstreamHttpClient } from "../http/http-client.js";
import type { GetSecret } from "../http/secrets.js";
import { readSse } from "../http/sse.js";
import {
  joinUrl,
  requireKey,
  resolveGetSecret,
  type UpstreamEngineOptions,
  upstreamStatus,
} from "../http/upstream-options.js";
import {
  fromOpenAIChunk,
  fromOpenAICompletion,
  fromOpenAIEmbedResponse,
  mapUsage,
  toOpenAIEmbedRequest,
  toOpenAIRequest,
} from "./openai.mapping.js";
import type { OpenAIChatCompletion, OpenAIChatCompletionChunk, OpenAIEmbeddingResponse } from "./openai.types.js";

const PROVIDER = "OpenAI upstream";

function asOpenAI(model: ModelEntry): OpenAIModelEntry {
  if (model.engine !== "openai") {
    throw new AppError("INTERNAL", `model ${model.id} (engine ${model.engine}) was sent to the openai engine`, {
      retryable: false,
    });
  }
  return model;
}

/**
 * Runs models served by OpenAI or any OpenAI-compatible API (chat completions and embeddings). Non-streaming
 * requests call the provider without streaming and surface its answer as one chunk of full deltas; streaming
 * requests relay the provider's SSE chunks. Either way the last chunk carries the provider's usage and no choices
 * (estimated only if the provider sent none). A stream that ends without `data: [DONE]` throws UNAVAILABLE.
 * All failures are AppError (see ../http/errors.ts for the status mapping).
 */
export class OpenAIEngine implements Engine {
  readonly kind = "openai" as const;
  private readonly http: UpstreamHttpClient;
  private readonly ownsHttp: boolean;
  private readonly getSecret: GetSecret;

  constructor(options: UpstreamEngineOptions = {}) {
    this.http = options.http ?? new UpstreamHttpClient();
    this.ownsHttp = options.http === undefined;
    this.getSecret = resolveGetSecret(options);
  }

  private headers(entry: OpenAIModelEntry, stream: boolean): Record<string, string> {
    const key = requireKey(entry, this.getSecret);
    const headers: Record<string, string> = {
      "content-type": "application/json",
      accept: stream ? "text/event-stream" : "application/json",
    };
    if (key !== undefined) headers.authorization = `Bearer ${key}`;
    return { ...headers, ...entry.headers };
  }

  async *generate(call: GenerateCall): AsyncGenerator<ChatChunk> {
    const entry = asOpenAI(call.model);
    const stream = call.request.stream;
    const headers = this.headers(entry, stream);
    const body = JSON.stringify(toOpenAIRequest(entry, call.request, stream));
    const exchange = await this.http.post({
      provider: PROVIDER,
      url: joinUrl(entry.base_url, "/chat/completions"),
      headers,
      body,
      signal: call.signal,
      timeoutMs: entry.timeout_ms,
    });
    const created = nowSeconds();
    let done = false;
    try {
      if (!stream) {
        const completion = await exchange.json<OpenAIChatCompletion>(PROVIDER);
        const chunk = fromOpenAICompletion(completion, entry.upstream_model, created);
        yield chunk;
        const outChars = chunk.choices.reduce((n, c) => n + c.content.length, 0);
        const u = completion.usage ? mapUsage(completion.usage) : estimatedUsage(call.request.messages, outChars);
        yield usageChunk(chunk.id, chunk.created, chunk.model, u);
        return;
      }

      let id = "";
      let model = entry.upstream_model;
      let at = created;
      let reported: Usage | undefined;
      let outChars = 0;
      for await (const event of readSse(exchange.chunks())) {
        // Events after [DONE] are read only so the connection ends cleanly and can be reused.
        if (done) continue;
        if (event.data === "[DONE]") {
          done = true;
          yield usageChunk(id, at, model, reported ?? estimatedUsage(call.request.messages, outChars));
          continue;
        }
        let json: OpenAIChatCompletionChunk;
        try {
          json = JSON.parse(event.data) as OpenAIChatCompletionChunk;
        } catch (err) {
          throw malformedError(PROVIDER, "sent a stream event that is not JSON", err);
        }
        if (json.error !== undefined && json.error !== null)
          throw errorFromStreamEvent(PROVIDER, providerErrorFromJson(json));
        if (json.usage) reported = mapUsage(json.usage);
        if (json.id) id = json.id;
        if (json.model) model = json.model;
        if (json.created) at = json.created;
        const chunk = fromOpenAIChunk(json, model, at);
        if (chunk !== undefined) {
          for (const c of chunk.choices)
            outChars += c.content.length + c.toolCalls.reduce((n, t) => n + (t.function?.arguments.length ?? 0), 0);
          yield chunk;
        }
      }
      if (!done) throw malformedError(PROVIDER, "stream ended before [DONE]");
    } catch (err) {
      // After [DONE] the answer is complete and delivered: a failure while draining the connection is not the caller's.
      if (done) return;
      throw exchange.error(err);
    } finally {
      exchange.dispose();
    }
  }

  async embed(call: EmbedCall): Promise<EmbedResponse> {
    const entry = asOpenAI(call.model);
    const exchange = await this.http.post({
      provider: PROVIDER,
      url: joinUrl(entry.base_url, "/embeddings"),
      headers: this.headers(entry, false),
      body: JSON.stringify(toOpenAIEmbedRequest(entry, call.request)),
      signal: call.signal,
      timeoutMs: entry.timeout_ms,
    });
    try {
      return fromOpenAIEmbedResponse(await exchange.json<OpenAIEmbeddingResponse>(PROVIDER), entry.upstream_model);
    } catch (err) {
      throw exchange.error(err);
    } finally {
      exchange.dispose();
    }
  }

  /** Estimated (chars / 4): OpenAI has no token counting endpoint and we ship no tokenizer. */
  async countTokens(_model: ModelEntry, messages: ChatMessage[]): Promise<TokenCount> {
    return { tokens: estimateMessageTokens(messages), exact: false };
  }

  /** Checks the key env var is set (FAILED_PRECONDITION otherwise); makes no network call. */
  async load(model: ModelEntry): Promise<void> {
    requireKey(asOpenAI(model), this.getSecret);
  }

  status(model: ModelEntry): ModelStatus {
    return upstreamStatus(asOpenAI(model), this.getSecret);
  }

  /** Closes the engine's own connection pools (not a shared client passed in options). */
  async close(): Promise<void> {
    if (this.ownsHttp) await this.http.close();
  }
}

function estimatedUsage(messages: ChatMessage[], outChars: number): Usage {
  return usage(estimateMessageTokens(messages), Math.ceil(outChars / 4), 0);
}
