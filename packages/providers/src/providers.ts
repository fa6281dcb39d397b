import type { ModelEntry } from "@tokenmesh/catalog";
import { AppError } from "@tokenmesh/runtime";
import { AnthropicEngine } from "./anthropic/anthropic.engine.js";
import { isRemoteModel, type ModelStatus, type ProviderEngine, type ProviderKind } from "./engine.js";
import { UpstreamHttpClient, type UpstreamHttpClientOptions } from "./http/http-client.js";
import type { GetSecret } from "./http/secrets.js";
import { OpenAIEngine } from "./openai/openai.engine.js";

export interface ProvidersOptions {
  /** Reads a provider key by env var name (the catalog's `api_key_env`). Default: the process environment. */
  getSecret?: GetSecret;
  /** Connection pool settings and the per-exchange hook of the one HTTP client every engine shares. */
  http?: UpstreamHttpClientOptions;
}

/**
 * Every remote provider engine, registered in one map by the catalog's `engine` name and sharing one HTTP client
 * (one keep-alive pool per upstream origin). Adding a provider is adding an engine here and a row to the contract
 * suite. Nothing touches the network until a model is called.
 */
export class Providers {
  private readonly http: UpstreamHttpClient;
  private readonly engines: Readonly<Record<ProviderKind, ProviderEngine>>;

  constructor(options: ProvidersOptions = {}) {
    this.http = new UpstreamHttpClient(options.http);
    const shared = { http: this.http, ...(options.getSecret ? { getSecret: options.getSecret } : {}) };
    this.engines = { openai: new OpenAIEngine(shared), anthropic: new AnthropicEngine(shared) };
  }

  /** The engine that serves `entry`; INTERNAL for a local model (those are inference's). */
  engineFor(entry: ModelEntry): ProviderEngine {
    if (!isRemoteModel(entry)) {
      throw new AppError("INTERNAL", `model ${entry.id} is a local model, not served by a provider`, {
        retryable: false,
      });
    }
    return this.engines[entry.engine];
  }

  /** Readiness of a remote model, in-process: its key env var is set (or it needs none). */
  status(entry: ModelEntry): ModelStatus {
    return this.engineFor(entry).status(entry);
  }

  /** Closes idle connections; requests in flight finish. */
  async close(): Promise<void> {
    await Promise.all(Object.values(this.engines).map((e) => e.close()));
    await this.http.close();
  }
}
