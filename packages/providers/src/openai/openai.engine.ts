import type { OpenAIModelEntry } from "@tokenmesh/catalog";
import type { ChatChunk, ChatDelta, ChatMessage, EmbedResponse, Usage } from "@tokenmesh/proto/common/v1/chat";
import { estimateMessageTokens, estimateTextTokens } from "@tokenmesh/tokens";
import type { EmbedCall, GenerateCall, ProviderEngine } from "../engine.js";
import { nowSeconds, usage, usageChunk } from "../http/chunks.js";
import { errorFromStreamEvent, malformedError, providerErrorFromJson } from "../http/errors.js";
import { readSse } from "../http/sse.js";
import { UpstreamEngine } from "../http/upstream-engine.js";
import { joinUrl, requireKey } from "../http/upstream-options.js";
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

/**
 * Runs models served by OpenAI or any OpenAI-compatible API (chat completions and embeddings). Non-streaming
 * requests call the provider without streaming and surface its answer as one chunk of full deltas; streaming
 * requests relay the provider's SSE chunks. Either way the last chunk carries the provider's usage and no choices
 * (estimated only if the provider sent none). A stream that ends without `data: [DONE]` throws UNAVAILABLE.
 * All failures are AppError (see ../http/errors.ts for the status mapping).
 */
export class OpenAIEngine extends UpstreamEngine<OpenAIModelEntry> implements ProviderEngine {
  readonly kind = "openai" as const;

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
    const entry = this.entry(call.model);
    const stream = call.request.stream;
    const headers = this.headers(entry, stream);
    const body = JSON.stringify(toOpenAIRequest(entry, call.request, stream));
    const exchange = await this.http.post({
      provider: PROVIDER,
      kind: this.kind,
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
        const u = completion.usage
          ? mapUsage(completion.usage)
          : estimatedUsage(
              call.request.messages,
              chunk.choices.reduce((n, c) => n + outputTokens(c), 0),
            );
        // The whole answer and its usage in one chunk: one message per hop instead of two.
        yield { ...chunk, usage: u };
        return;
      }

      let id = "";
      let model = entry.upstream_model;
      let at = created;
      let reported: Usage | undefined;
      let outTokens = 0;
      for await (const event of readSse(exchange.chunks())) {
        // Events after [DONE] are read only so the connection ends cleanly and can be reused.
        if (done) continue;
        if (event.data === "[DONE]") {
          done = true;
          yield usageChunk(id, at, model, reported ?? estimatedUsage(call.request.messages, outTokens));
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
          // Only needed when the provider sends no usage; cheap enough to keep for every stream.
          for (const c of chunk.choices) outTokens += outputTokens(c);
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
    const entry = this.entry(call.model);
    const exchange = await this.http.post({
      provider: PROVIDER,
      kind: this.kind,
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
}

/** Usage estimated by `@tokenmesh/tokens`, for providers that send none. */
function estimatedUsage(messages: ChatMessage[], outTokens: number): Usage {
  return usage(estimateMessageTokens(messages), outTokens, 0);
}

/** Estimated tokens of one delta: its text and tool-call arguments. */
function outputTokens(d: ChatDelta): number {
  let n = d.content === "" ? 0 : estimateTextTokens(d.content);
  for (const t of d.toolCalls) if (t.function?.arguments) n += estimateTextTokens(t.function.arguments);
  return n;
}
