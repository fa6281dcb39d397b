import { randomUUID } from "node:crypto";
import type { ChatRequest } from "@tokenmesh/proto/common/v1/chat";
import {
  type GenerateRequest,
  type GenerateResponse,
  type GenerateStreamRequest,
  type GenerateStreamResponse,
  InferenceServiceService,
} from "@tokenmesh/proto/inference/v1/inference";
import { AppError, type CallContext, type Handlers, Multiplexed } from "@tokenmesh/runtime";
import { genAiMetrics, recordSpanError, SpanKind, tracer } from "@tokenmesh/telemetry";
import type { ModelRegistry } from "../domain/model-registry.js";
import { metrics } from "../metrics.js";

function validateChat(request: ChatRequest | undefined): ChatRequest {
  if (!request) throw new AppError("INVALID_ARGUMENT", "request is required", { param: "request" });
  if (request.messages.length === 0) {
    throw new AppError("INVALID_ARGUMENT", "messages must not be empty", { param: "messages" });
  }
  if (request.n > 1) throw new AppError("INVALID_ARGUMENT", "n > 1 is not supported", { param: "n" });
  return request;
}

/**
 * InferenceService handlers: resolve the local catalog model, run the engine, and record a `chat <model>` span and
 * the engine's metrics (time to first token as the GenAI server histogram; the router, the client of every model
 * call, records gen_ai_client_*). Errors are AppErrors from the engine (with retryable/origin set), mapped to gRPC
 * status by the server wrapper.
 */
export function inferenceHandlers(registry: ModelRegistry): Handlers<typeof InferenceServiceService> {
  // made-once: inferenceHandlers runs once, at startup (scripts/check-closures.mjs).
  async function* generate(req: GenerateRequest, ctx: CallContext): AsyncGenerator<GenerateResponse> {
    const { entry, engine } = registry.get(req.model);
    if (entry.kind !== "chat") {
      throw new AppError("INVALID_ARGUMENT", `model "${entry.id}" is an embedding model`, { param: "model" });
    }
    const request = validateChat(req.request);
    const span = tracer().startSpan(`chat ${entry.id}`, {
      kind: SpanKind.INTERNAL,
      attributes: {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "tokenmesh.local",
        "gen_ai.request.model": entry.id,
        ...(request.maxTokens !== undefined ? { "gen_ai.request.max_tokens": request.maxTokens } : {}),
        ...(request.temperature !== undefined ? { "gen_ai.request.temperature": request.temperature } : {}),
        ...(request.topP !== undefined ? { "gen_ai.request.top_p": request.topP } : {}),
        ...(request.seed !== undefined ? { "gen_ai.request.seed": request.seed } : {}),
      },
    });
    const labels = {
      gen_ai_operation_name: "chat",
      gen_ai_provider_name: engine.kind,
      gen_ai_request_model: entry.id,
    };
    const started = performance.now();
    let firstAt: number | undefined;
    let code = "OK";
    try {
      for await (const chunk of engine.generate({
        requestId: req.context?.requestId || randomUUID(),
        model: entry,
        request,
        signal: ctx.signal,
        priority: req.context?.priority ?? 0,
        tenant: req.context?.team || req.context?.keyId || "",
      })) {
        if (firstAt === undefined && chunk.choices.some((c) => c.content || c.toolCalls.length > 0)) {
          firstAt = performance.now();
          genAiMetrics.timeToFirstToken.observe(labels, (firstAt - started) / 1000);
        }
        if (chunk.usage) {
          const { inputTokens, outputTokens } = chunk.usage;
          span.setAttributes({
            "gen_ai.usage.input_tokens": inputTokens,
            "gen_ai.usage.output_tokens": outputTokens,
            "gen_ai.response.model": chunk.model || entry.id,
          });
          metrics.inputTokens.inc({ model: entry.id }, inputTokens);
          metrics.outputTokens.inc({ model: entry.id }, outputTokens);
          const genSeconds = firstAt === undefined ? 0 : (performance.now() - firstAt) / 1000;
          if (outputTokens > 1 && genSeconds > 0) {
            metrics.tokensPerSecond.observe({ model: entry.id }, (outputTokens - 1) / genSeconds);
          }
        }
        yield { chunk };
      }
    } catch (err) {
      code = err instanceof AppError ? err.code : "INTERNAL";
      recordSpanError(span, err);
      throw err;
    } finally {
      if (ctx.signal.aborted && code === "OK") code = "CANCELLED";
      metrics.requests.inc({ model: entry.id, operation: "chat", code });
      span.end();
    }
  }

  return {
    generate,
    // The router's form of Generate: its calls share long-lived streams, each served exactly as a Generate call.
    generateStream: new Multiplexed<GenerateStreamRequest, GenerateStreamResponse>(
      InferenceServiceService.generate.path,
      generate,
    ),

    async embed(req, ctx) {
      const { entry, engine } = registry.get(req.model);
      if (!req.request || req.request.input.length === 0) {
        throw new AppError("INVALID_ARGUMENT", "input must not be empty", { param: "input" });
      }
      const response = await engine.embed({
        requestId: req.context?.requestId || randomUUID(),
        model: entry,
        request: req.request,
        signal: ctx.signal,
      });
      metrics.requests.inc({ model: entry.id, operation: "embeddings", code: "OK" });
      return { response };
    },

    async listModels() {
      return {
        models: registry.list().map(({ entry, status }) => ({
          id: entry.id,
          engine: entry.engine,
          device: status.device,
          ready: status.ready,
          contextWindow: entry.context_window,
          maxOutputTokens: entry.max_output_tokens,
          aliases: entry.aliases,
          ownedBy: entry.owned_by ?? "tokenmesh",
          tier: entry.tier ?? "",
        })),
      };
    },

    async countTokens(req) {
      const { entry, engine } = registry.get(req.model);
      return engine.countTokens(entry, req.messages);
    },
  };
}
