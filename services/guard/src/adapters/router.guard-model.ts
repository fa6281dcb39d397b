import { ChatMessage, ChatRequest, Role } from "@tokenmesh/proto/common/v1/chat";
import type { RequestContext } from "@tokenmesh/proto/common/v1/context";
import { RouterServiceClient } from "@tokenmesh/proto/router/v1/router";
import { callStream, createGrpcClient } from "@tokenmesh/runtime";

/** Enough for Llama Guard's `unsafe` line and all 14 codes; ShieldGemma is read from its first word. */
const MAX_VERDICT_TOKENS = 48;

/**
 * Guard models called through the router's `Route` RPC (guard → router → provider or local engine), so a guard
 * model is an ordinary catalog entry with the router's retries, fallbacks and breakers. One user message in, the
 * text of choice 0 out; greedy decoding, a short answer, never streamed to anyone.
 */
export class RouterGuardModel {
  private readonly client: RouterServiceClient;

  constructor(address: string) {
    this.client = createGrpcClient(RouterServiceClient, address);
  }

  /** The model's answer to `prompt`; `context` is the checked request's, so the router logs and traces it as such. */
  async complete(context: RequestContext, model: string, prompt: string, signal: AbortSignal): Promise<string> {
    const request = ChatRequest.fromPartial({
      model,
      messages: [ChatMessage.fromPartial({ role: Role.ROLE_USER, content: prompt })],
      temperature: 0,
      maxTokens: MAX_VERDICT_TOKENS,
      stream: false,
    });
    let text = "";
    // Only the text is read here: the route may come with the first chunk, and chunks together (fewer messages).
    const call = { context, request, routeWithFirstChunk: true, batchChunks: true };
    for await (const ev of callStream(this.client.route.bind(this.client), call, { signal })) {
      for (const chunk of [...(ev.chunk === undefined ? [] : [ev.chunk]), ...(ev.moreChunks?.chunks ?? [])]) {
        for (const c of chunk.choices) if (c.index === 0) text += c.content;
      }
    }
    return text;
  }

  close(): void {
    this.client.close();
  }
}
