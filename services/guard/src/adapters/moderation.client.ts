import type { DeepSource } from "@tokenmesh/guard-policy";
import { AppError, UpstreamUnavailableError } from "@tokenmesh/runtime";
import { injectHeaders } from "@tokenmesh/telemetry";
import { readSecret } from "../config.js";

type ModerationSource = Extract<DeepSource, { kind: "moderation" }>;

/**
 * An OpenAI-compatible `/v1/moderations` upstream over HTTP (`POST <base_url>/moderations` with `{ model, input }`).
 * It lives here rather than in packages/providers because only the guard calls moderation endpoints; it may move
 * there once that package has a place for non-chat endpoints. Resolves with the parsed JSON body; a non-2xx answer
 * or an unreadable body rejects (the deep check then follows `on_error`).
 */
export class HttpModeration {
  async moderate(source: ModerationSource, inputs: string[], signal: AbortSignal): Promise<unknown> {
    const headers: Record<string, string> = { "content-type": "application/json", ...source.headers };
    if (source.apiKeyEnv) {
      const key = readSecret(source.apiKeyEnv);
      if (!key) throw new AppError("FAILED_PRECONDITION", `moderation key env ${source.apiKeyEnv} is not set`);
      headers.authorization = `Bearer ${key}`;
    }
    // The deep check's span goes upstream as W3C traceparent (the calling span is the deep tier's own).
    injectHeaders(headers);
    const res = await fetch(`${source.baseUrl}/moderations`, {
      method: "POST",
      headers,
      body: JSON.stringify({ model: source.model, input: inputs }),
      signal,
    });
    if (!res.ok) {
      await res.body?.cancel();
      throw new UpstreamUnavailableError(`moderation upstream answered ${res.status}`, { upstreamStatus: res.status });
    }
    return res.json();
  }
}
