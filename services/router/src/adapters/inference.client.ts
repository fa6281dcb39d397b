import type { ChatChunk, ChatRequest, EmbedRequest, EmbedResponse, ModelInfo } from "@tokenmesh/proto/common/v1/chat";
import type { RequestContext } from "@tokenmesh/proto/common/v1/context";
import { InferenceServiceClient } from "@tokenmesh/proto/inference/v1/inference";
import { type CallParams, callStream, callUnary, createGrpcClient } from "@tokenmesh/runtime";
import { type Attributes, context, recordSpanError, type Span, SpanKind, trace, tracer } from "@tokenmesh/telemetry";

/** The model an attempt runs on, as the spans describe it. */
export interface AttemptModel {
  /** Catalog id (what inference is asked for, and `gen_ai.request.model`). */
  id: string;
  /** Engine kind: "local", "openai" or "anthropic" (`gen_ai.provider.name`). */
  engine: string;
}

/** Per-call parameters every inference call carries. */
export interface InferenceCall {
  /** Who the request is for; forwarded so inference can log and account for it. */
  context: RequestContext | undefined;
  signal: AbortSignal;
  /** The caller's deadline, forwarded as the gRPC deadline of each attempt. */
  deadline: Date | undefined;
}

function params(call: InferenceCall): CallParams {
  const p: CallParams = { signal: call.signal };
  if (call.deadline) p.deadlineMs = Math.max(1, call.deadline.getTime() - Date.now());
  return p;
}

/**
 * The router's client of InferenceService. Each Generate/Embed attempt gets a GenAI CLIENT span
 * (`chat <model>` / `embeddings <model>`) parenting the gRPC call's own span, with `gen_ai.*` request, response and
 * usage attributes.
 */
export class InferenceClient {
  private readonly client: InferenceServiceClient;

  constructor(address: string) {
    this.client = createGrpcClient(InferenceServiceClient, address);
  }

  /**
   * Streams `request` on `model`. Stopping iteration, or aborting `call.signal`, cancels the gRPC call; errors are
   * AppErrors rebuilt from inference's error trailer (so `retryable` and `origin` survive the hop).
   */
  async *generate(model: AttemptModel, request: ChatRequest, call: InferenceCall): AsyncGenerator<ChatChunk> {
    const { span, active } = startSpan("chat", model, {
      ...(request.maxTokens !== undefined ? { "gen_ai.request.max_tokens": request.maxTokens } : {}),
      ...(request.temperature !== undefined ? { "gen_ai.request.temperature": request.temperature } : {}),
    });
    const client = this.client;
    const stream = callStream(
      client.generate.bind(client),
      { context: call.context, model: model.id, request: { ...request, model: model.id } },
      params(call),
    );
    let finished = false;
    try {
      // The call starts on the first next(): run it in the span's context so the gRPC span is its child.
      let next = await context.with(active, () => stream.next());
      while (!next.done) {
        const chunk = next.value.chunk;
        if (chunk) {
          if (chunk.model) span.setAttribute("gen_ai.response.model", chunk.model);
          if (chunk.id) span.setAttribute("gen_ai.response.id", chunk.id);
          if (chunk.usage) setUsage(span, chunk.usage);
          yield chunk;
        }
        next = await stream.next();
      }
      finished = true;
    } catch (err) {
      finished = true;
      recordSpanError(span, err);
      throw err;
    } finally {
      if (!finished) {
        span.setAttribute("error.type", "cancelled");
        await stream.return(undefined);
      }
      span.end();
    }
  }

  /** Embeds `request` on `model` (unary). */
  async embed(model: AttemptModel, request: EmbedRequest, call: InferenceCall): Promise<EmbedResponse> {
    const { span, active } = startSpan("embeddings", model, {});
    const client = this.client;
    try {
      const res = await context.with(active, () =>
        callUnary(
          client.embed.bind(client),
          { context: call.context, model: model.id, request: { ...request, model: model.id } },
          params(call),
        ),
      );
      const response = res.response ?? { model: model.id, data: [], usage: undefined };
      if (response.model) span.setAttribute("gen_ai.response.model", response.model);
      if (response.usage) setUsage(span, response.usage);
      return response;
    } catch (err) {
      recordSpanError(span, err);
      throw err;
    } finally {
      span.end();
    }
  }

  /** Inference's view of its models (readiness, device). */
  async listModels(timeoutMs: number): Promise<ModelInfo[]> {
    const client = this.client;
    const res = await callUnary(client.listModels.bind(client), {}, { deadlineMs: timeoutMs });
    return res.models;
  }

  close(): void {
    this.client.close();
  }
}

function startSpan(operation: "chat" | "embeddings", model: AttemptModel, extra: Attributes) {
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

function setUsage(span: Span, usage: { inputTokens: number; outputTokens: number }): void {
  span.setAttribute("gen_ai.usage.input_tokens", usage.inputTokens);
  span.setAttribute("gen_ai.usage.output_tokens", usage.outputTokens);
}
