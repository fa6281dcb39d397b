import { randomUUID } from "node:crypto";
import type { ModelEntry } from "@tokenmesh/catalog";
import type { ChatChunk, ChatRequest, EmbedRequest, EmbedResponse, Usage } from "@tokenmesh/proto/common/v1/chat";
import { isRemoteModel, type Providers } from "@tokenmesh/providers";
import { isAppError } from "@tokenmesh/runtime";
import {
  type Attributes,
  context,
  genAiMetrics,
  recordSpanError,
  type Span,
  SpanKind,
  trace,
  tracer,
} from "@tokenmesh/telemetry";
import { routerMetrics } from "../metrics.js";
import type { InferenceCall, InferenceClient } from "./inference.client.js";

/**
 * Runs one attempt of a model, whatever serves it: remote models (`engine: openai | anthropic`) in-process through
 * their `@tokenmesh/providers` engine, so a remote request crosses no internal hop after the router; local models
 * through inference over gRPC.
 *
 * Each attempt gets a GenAI CLIENT span (`chat <model>` / `embeddings <model>`, with `gen_ai.*` request, response and
 * usage attributes) parenting the provider's HTTP call or the gRPC call to inference, and records the per-call
 * metrics: `gen_ai_client_operation_duration_seconds` and `gen_ai_client_token_usage` for every call, token
 * counters by model and provider, and for remote models `gen_ai_server_time_to_first_token_seconds` (inference
 * records it for local ones, where it generates the tokens).
 *
 * Errors are the engines' AppErrors (`retryable`, `origin` set), unchanged: the fallback domain decides on them.
 */
export class ModelCaller {
  constructor(
    private readonly providers: Pick<Providers, "engineFor">,
    private readonly inference: Pick<InferenceClient, "generate" | "embed">,
  ) {}

  /**
   * Streams `request` on `model`. Stopping iteration, or aborting `call.signal`, cancels the upstream request or the
   * gRPC call. The last chunk carries usage; a stream that breaks throws, never ends cleanly.
   */
  async *generate(model: ModelEntry, request: ChatRequest, call: InferenceCall): AsyncGenerator<ChatChunk> {
    const { span, active } = startSpan("chat", model, {
      ...(request.maxTokens !== undefined ? { "gen_ai.request.max_tokens": request.maxTokens } : {}),
      ...(request.temperature !== undefined ? { "gen_ai.request.temperature": request.temperature } : {}),
      ...(request.topP !== undefined ? { "gen_ai.request.top_p": request.topP } : {}),
    });
    const labels = genAiLabels("chat", model);
    const remote = isRemoteModel(model);
    const started = performance.now();
    let first = true;
    let errorType = "";
    // Created in the span's context so the provider's HTTP call or the gRPC call to inference is its child.
    const source = context.with(active, () =>
      remote
        ? this.providers
            .engineFor(model)
            .generate({ requestId: call.context?.requestId || randomUUID(), model, request, signal: call.signal })
        : this.inference.generate(model.id, request, call),
    );
    const iterator = source[Symbol.asyncIterator]();
    let finished = false;
    try {
      for (;;) {
        const next = await context.with(active, () => iterator.next());
        if (next.done) break;
        const chunk = next.value;
        if (first && chunk.choices.some((c) => c.content !== "" || c.toolCalls.length > 0)) {
          first = false;
          if (remote) genAiMetrics.timeToFirstToken.observe(labels, (performance.now() - started) / 1000);
        }
        if (chunk.model) span.setAttribute("gen_ai.response.model", chunk.model);
        if (chunk.id) span.setAttribute("gen_ai.response.id", chunk.id);
        if (chunk.usage) recordUsage(span, model, labels, chunk.usage);
        yield chunk;
      }
      finished = true;
    } catch (err) {
      finished = true;
      errorType = errorTypeOf(err);
      recordSpanError(span, err);
      throw err;
    } finally {
      if (!finished) {
        errorType = "cancelled";
        span.setAttribute("error.type", "cancelled");
        await iterator.return?.();
      }
      genAiMetrics.operationDuration.observe(
        { ...labels, error_type: errorType },
        (performance.now() - started) / 1000,
      );
      span.end();
    }
  }

  /** Embeds `request` on `model` (one call, no stream). */
  async embed(model: ModelEntry, request: EmbedRequest, call: InferenceCall): Promise<EmbedResponse> {
    const { span, active } = startSpan("embeddings", model, {});
    const labels = genAiLabels("embeddings", model);
    const started = performance.now();
    let errorType = "";
    try {
      const response = await context.with(active, () =>
        isRemoteModel(model)
          ? this.providers.engineFor(model).embed({
              requestId: call.context?.requestId || randomUUID(),
              model,
              request,
              signal: call.signal,
            })
          : this.inference.embed(model.id, request, call),
      );
      if (response.model) span.setAttribute("gen_ai.response.model", response.model);
      if (response.usage) recordUsage(span, model, labels, response.usage);
      return response;
    } catch (err) {
      errorType = errorTypeOf(err);
      recordSpanError(span, err);
      throw err;
    } finally {
      genAiMetrics.operationDuration.observe(
        { ...labels, error_type: errorType },
        (performance.now() - started) / 1000,
      );
      span.end();
    }
  }
}

type GenAiLabels = { gen_ai_operation_name: string; gen_ai_provider_name: string; gen_ai_request_model: string };

function genAiLabels(operation: "chat" | "embeddings", model: ModelEntry): GenAiLabels {
  return { gen_ai_operation_name: operation, gen_ai_provider_name: model.engine, gen_ai_request_model: model.id };
}

function startSpan(operation: "chat" | "embeddings", model: ModelEntry, extra: Attributes) {
  const parent = context.active();
  const span = tracer().startSpan(
    `${operation} ${model.id}`,
    {
      kind: SpanKind.CLIENT,
      attributes: {
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name": model.engine,
        "gen_ai.request.model": model.id,
        ...extra,
      },
    },
    parent,
  );
  return { span, active: trace.setSpan(parent, span) };
}

function recordUsage(span: Span, model: ModelEntry, labels: GenAiLabels, usage: Usage): void {
  span.setAttribute("gen_ai.usage.input_tokens", usage.inputTokens);
  span.setAttribute("gen_ai.usage.output_tokens", usage.outputTokens);
  genAiMetrics.tokenUsage.observe({ ...labels, gen_ai_token_type: "input" }, usage.inputTokens);
  if (labels.gen_ai_operation_name === "chat") {
    genAiMetrics.tokenUsage.observe({ ...labels, gen_ai_token_type: "output" }, usage.outputTokens);
  }
  const byModel = { model: model.id, provider: model.engine };
  routerMetrics.inputTokens.inc(byModel, usage.inputTokens);
  routerMetrics.outputTokens.inc(byModel, usage.outputTokens);
}

function errorTypeOf(err: unknown): string {
  return isAppError(err) ? err.code : "INTERNAL";
}
