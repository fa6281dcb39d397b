import type { AnthropicModelEntry, ModelEntry, OpenAIModelEntry } from "@tokenmesh/catalog";
import type { ChatMessage } from "@tokenmesh/proto/common/v1/chat";
import { AppError } from "@tokenmesh/runtime";
import { estimateMessageTokens } from "@tokenmesh/tokens";
import type { ModelStatus, TokenCount } from "../engine.js";
import { UpstreamHttpClient } from "./http-client.js";
import type { GetSecret } from "./secrets.js";
import { requireKey, resolveGetSecret, type UpstreamEngineOptions, upstreamStatus } from "./upstream-options.js";

/**
 * What the upstream engines share: the pooled HTTP client (owned or shared), the key lookup, readiness from the
 * key env var, estimated token counts, and narrowing a catalog entry to the engine's own kind.
 */
export abstract class UpstreamEngine<E extends OpenAIModelEntry | AnthropicModelEntry> {
  abstract readonly kind: E["engine"];
  protected readonly http: UpstreamHttpClient;
  protected readonly getSecret: GetSecret;
  private readonly ownsHttp: boolean;

  constructor(options: UpstreamEngineOptions = {}) {
    this.http = options.http ?? new UpstreamHttpClient();
    this.ownsHttp = options.http === undefined;
    this.getSecret = resolveGetSecret(options);
  }

  /** The entry as this engine's kind; INTERNAL when the registry sent another engine's model. */
  protected entry(model: ModelEntry): E {
    if (model.engine !== this.kind) {
      throw new AppError("INTERNAL", `model ${model.id} (engine ${model.engine}) was sent to the ${this.kind} engine`, {
        retryable: false,
      });
    }
    return model as E;
  }

  /** Estimated by `@tokenmesh/tokens`, without a network call: providers' token counts come back with usage. */
  async countTokens(_model: ModelEntry, messages: ChatMessage[]): Promise<TokenCount> {
    return { tokens: estimateMessageTokens(messages), exact: false };
  }

  /** Checks the key env var is set (FAILED_PRECONDITION otherwise); makes no network call. */
  async load(model: ModelEntry): Promise<void> {
    requireKey(this.entry(model), this.getSecret);
  }

  status(model: ModelEntry): ModelStatus {
    return upstreamStatus(this.entry(model), this.getSecret);
  }

  /** Closes the engine's own connection pools (not a shared client passed in options). */
  async close(): Promise<void> {
    if (this.ownsHttp) await this.http.close();
  }
}
