import type { ChatChunk, ChatRequest, EmbedRequest, EmbedResponse, ModelInfo } from "@tokenmesh/proto/common/v1/chat";
import type { RequestContext } from "@tokenmesh/proto/common/v1/context";
import {
  type GenerateRequest,
  type GenerateResponse,
  InferenceServiceClient,
  InferenceServiceService,
} from "@tokenmesh/proto/inference/v1/inference";
import {
  type CallParams,
  callStream,
  callUnary,
  createGrpcClient,
  createSharedStreams,
  type MuxClient,
} from "@tokenmesh/runtime";

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
 *
 * Generations share `streams` long-lived GenerateStream streams: a local stream's start is then one frame on a
 * stream already open, not an HTTP/2 stream of its own (headers, a server-side call object, its trailers); about
 * 1 ms of its first chunk on the 2-vCPU VM, and less CPU per call (bench/inference/README.md, bench/grpc). An
 * inference of an earlier release that does not know GenerateStream is called with Generate, and so is every call
 * with `streams: 0`.
 */
export class InferenceClient {
  private readonly client: InferenceServiceClient;
  private readonly mux: MuxClient<GenerateRequest, GenerateResponse> | undefined;

  constructor(address: string, options: { streams?: number } = {}) {
    this.client = createGrpcClient(InferenceServiceClient, address);
    const streams = options.streams ?? 2;
    if (streams > 0) {
      this.mux = createSharedStreams(InferenceServiceClient, address, this.client, {
        path: InferenceServiceService.generate.path,
        method: InferenceServiceService.generateStream,
        fallback: (req: GenerateRequest, p: CallParams) => this.callGenerate(req, p),
        streams,
      });
    }
  }

  private callGenerate(req: GenerateRequest, p: CallParams): AsyncIterable<GenerateResponse> {
    return callStream(this.client.generate.bind(this.client), req, p);
  }

  /**
   * Streams `request` on the local model `modelId`. Stopping iteration, or aborting `call.signal`, cancels the gRPC
   * call; errors are AppErrors rebuilt from inference's error trailer (so `retryable` and `origin` survive the hop).
   */
  async *generate(modelId: string, request: ChatRequest, call: InferenceCall): AsyncGenerator<ChatChunk> {
    const req: GenerateRequest = { context: call.context, model: modelId, request: { ...request, model: modelId } };
    const p = params(call);
    const answer = this.mux === undefined ? this.callGenerate(req, p) : this.mux.call(req, p);
    for await (const res of answer) {
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
    this.mux?.close();
    this.client.close();
  }
}
