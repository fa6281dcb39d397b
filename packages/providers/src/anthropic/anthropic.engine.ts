import type { AnthropicModelEntry } from "@tokenmesh/catalog";
import type { ChatChunk, EmbedResponse } from "@tokenmesh/proto/common/v1/chat";
import { AppError } from "@tokenmesh/runtime";
import type { EmbedCall, GenerateCall, ProviderEngine } from "../engine.js";
import { nowSeconds, usageChunk } from "../http/chunks.js";
import { malformedError } from "../http/errors.js";
import { readSse } from "../http/sse.js";
import { UpstreamEngine } from "../http/upstream-engine.js";
import { joinUrl, requireKey } from "../http/upstream-options.js";
import { fromAnthropicMessage, mapUsage, toAnthropicRequest } from "./anthropic.mapping.js";
import { AnthropicStreamTranslator } from "./anthropic.stream.js";
import type { AnthropicResponseMessage, AnthropicStreamEvent } from "./anthropic.types.js";

const PROVIDER = "Anthropic upstream";

/**
 * Runs Anthropic models through the Messages API (`x-api-key`, `anthropic-version` from the entry). Non-streaming
 * requests call without streaming and surface the message as one chunk; streaming requests translate Anthropic's
 * events (see AnthropicStreamTranslator). The last chunk carries usage and no choices. A stream that ends before
 * `message_stop` throws UNAVAILABLE; 529 (overloaded) is UNAVAILABLE, retryable. Anthropic has no embeddings.
 */
export class AnthropicEngine extends UpstreamEngine<AnthropicModelEntry> implements ProviderEngine {
  readonly kind = "anthropic" as const;

  async *generate(call: GenerateCall): AsyncGenerator<ChatChunk> {
    const entry = this.entry(call.model);
    const stream = call.request.stream;
    const key = requireKey(entry, this.getSecret);
    const headers: Record<string, string> = {
      "content-type": "application/json",
      accept: stream ? "text/event-stream" : "application/json",
      "anthropic-version": entry.anthropic_version,
    };
    if (key !== undefined) headers["x-api-key"] = key;
    const body = JSON.stringify(toAnthropicRequest(entry, call.request, stream));
    const exchange = await this.http.post({
      provider: PROVIDER,
      kind: this.kind,
      url: joinUrl(entry.base_url, "/v1/messages"),
      headers: { ...headers, ...entry.headers },
      body,
      signal: call.signal,
      timeoutMs: entry.timeout_ms,
    });
    const created = nowSeconds();
    let t: AnthropicStreamTranslator | undefined;
    try {
      if (!stream) {
        const msg = await exchange.json<AnthropicResponseMessage & { type?: string }>(PROVIDER);
        // The whole answer and its usage in one chunk: one message per hop instead of two.
        yield { ...fromAnthropicMessage(msg, entry.upstream_model, created), usage: mapUsage(msg.usage ?? {}) };
        return;
      }
      t = new AnthropicStreamTranslator(entry.upstream_model, created, PROVIDER);
      for await (const event of readSse(exchange.chunks())) {
        // Anything after message_stop is read only so the connection ends cleanly and can be reused.
        if (t.done) continue;
        let json: AnthropicStreamEvent;
        try {
          json = JSON.parse(event.data) as AnthropicStreamEvent;
        } catch (err) {
          throw malformedError(PROVIDER, "sent a stream event that is not JSON", err);
        }
        // The `event:` line and the data's `type` agree; the line wins should a proxy strip the field.
        if (event.event !== "" && json.type === undefined) json.type = event.event;
        const chunk = t.onEvent(json);
        if (chunk !== undefined) yield chunk;
        if (t.done) yield usageChunk(t.id, created, t.model, t.finalUsage());
      }
      if (!t.done) throw malformedError(PROVIDER, "stream ended before message_stop");
    } catch (err) {
      // After message_stop the answer is complete and delivered: a failure while draining is not the caller's.
      if (t?.done) return;
      throw exchange.error(err);
    } finally {
      exchange.dispose();
    }
  }

  /** Always INVALID_ARGUMENT: Anthropic offers no embeddings. */
  async embed(call: EmbedCall): Promise<EmbedResponse> {
    throw new AppError(
      "INVALID_ARGUMENT",
      `model ${call.model.id} is an Anthropic model, and Anthropic has no embeddings API`,
      {
        param: "model",
        retryable: false,
      },
    );
  }
}
