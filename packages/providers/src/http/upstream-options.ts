import type { AnthropicModelEntry, OpenAIModelEntry } from "@tokenmesh/catalog";
import type { ModelStatus } from "../engine.js";
import { missingKeyError } from "./errors.js";
import type { UpstreamHttpClient } from "./http-client.js";
import { envSecret, type GetSecret } from "./secrets.js";

/** Constructor options shared by the upstream engines (OpenAIEngine, AnthropicEngine). */
export interface UpstreamEngineOptions {
  /** Reads a provider key by env var name (the catalog's `api_key_env`). Default: the process environment. */
  getSecret?: GetSecret;
  /**
   * The HTTP client to call providers with; share one between engines to share connection pools. Default: a new
   * client owned by the engine and closed by its `close()`.
   */
  http?: UpstreamHttpClient;
}

export function resolveGetSecret(options: UpstreamEngineOptions): GetSecret {
  return options.getSecret ?? envSecret;
}

/**
 * The model's key: undefined when the entry names no env var (keyless OpenAI-compatible servers), else the
 * secret, or FAILED_PRECONDITION naming the variable when it is unset.
 */
export function requireKey(entry: OpenAIModelEntry | AnthropicModelEntry, getSecret: GetSecret): string | undefined {
  if (entry.api_key_env === undefined) return undefined;
  const key = getSecret(entry.api_key_env);
  if (key === undefined || key === "") throw missingKeyError(entry.api_key_env, entry.id);
  return key;
}

/** Ready when the key is present (or none is needed); upstream reachability is the router's breakers' concern. */
export function upstreamStatus(entry: OpenAIModelEntry | AnthropicModelEntry, getSecret: GetSecret): ModelStatus {
  if (entry.api_key_env !== undefined) {
    const key = getSecret(entry.api_key_env);
    if (key === undefined || key === "")
      return { ready: false, device: "remote", detail: `env var ${entry.api_key_env} is not set` };
  }
  return { ready: true, device: "remote" };
}

/** `base_url` + path, tolerating a trailing slash on the base. */
export function joinUrl(base: string, path: string): string {
  return (base.endsWith("/") ? base.replace(/\/+$/, "") : base) + path;
}
