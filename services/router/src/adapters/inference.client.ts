import type { ChatChunk, ChatRequest, EmbedRequest, EmbedResponse, ModelInfo } from "@tokenmesh/proto/common/v1/chat";
import type { RequestContext } from "@tokenmesh/proto/common/v1/context";
import { InferenceServiceClient } from "@tokenmesh/proto/inference/v1/inference";
import { type CallParams, callStream, callUnary, createGrpcClient } from "@tokenmesh/runtime";

/** Per-call parameters every model call carries. */
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
 * The router's client of InferenceService, which serves the catalog's local models. The GenAI span and metrics of
 * each attempt are ModelCaller's; the gRPC call's own span is a child of it.
 */
export class InferenceClient {
  private readonly client: InferenceServiceClient;

  constructor(address: string) {
    this.client = createGrpcClient(InferenceServiceClient, address);
  }

  /**
   * Streams `request` on the local model `modelId`. Stopping iteration, or aborting `call.signal`, cancels the gRPC
   * call; errors are AppErrors rebuilt from inference's error trailer (so `retryable` and `origin` survive the hop).
   */
  async *generate(modelId: string, request: ChatRequest, call: InferenceCall): AsyncGenerator<ChatChunk> {
    const client = this.client;
    for await (const res of callStream(
      client.generate.bind(client),
      { context: call.context, model: modelId, request: { ...request, model: modelId } },
      params(call),
    )) {
      if (res.chunk) yield res.chunk;
    }
  }

  /** Embeds `request` on the local model `modelId` (unary). */
  async embed(modelId: string, request: EmbedRequest, call: InferenceCall): Promise<EmbedResponse> {
    const client = this.client;
    const res = await callUnary(
      client.embed.bind(client),
      { context: call.context, model: modelId, request: { ...request, model: modelId } },
      params(call),
    );
    return res.response ?? { model: modelId, data: [], usage: undefined };
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
