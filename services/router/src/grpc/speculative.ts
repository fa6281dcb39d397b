import { type ChatChunk, type ChatResponse, FinishReason, Role, type ToolCall } from "@tokenmesh/proto/common/v1/chat";
import type { RequestContext } from "@tokenmesh/proto/common/v1/context";
import type { RouteInfo } from "@tokenmesh/proto/router/v1/router";
import { toAppError } from "@tokenmesh/runtime";
import type { Logger } from "@tokenmesh/telemetry";
import type { RedisUpgradeStore } from "../adapters/redis-upgrade-store.js";
import type { RoutedEvent } from "../domain/fallback.js";
import type { ServedUsage } from "../domain/served-usage.js";
import type { ServedUsageSink } from "../events/usage-served.publisher.js";

/** The request id under which a speculative request's slow answer is reported to cost (billed on its own). */
export function upgradeRequestId(requestId: string): string {
  return `${requestId}:upgrade`;
}

/** Folds chunks into one response: text per choice, tool calls merged by index, the last finish reason and usage. */
export function foldChunks(chunks: readonly ChatChunk[], provider: string): ChatResponse {
  const choices = new Map<
    number,
    { content: string; refusal: string; tools: Map<number, ToolCall>; finish: FinishReason }
  >();
  const out: ChatResponse = { id: "", created: 0, model: "", choices: [], usage: undefined, provider, cacheHit: false };
  for (const chunk of chunks) {
    out.id ||= chunk.id;
    out.created ||= chunk.created;
    out.model ||= chunk.model;
    if (chunk.usage) out.usage = chunk.usage;
    for (const d of chunk.choices) {
      let c = choices.get(d.index);
      if (c === undefined) {
        c = { content: "", refusal: "", tools: new Map(), finish: FinishReason.FINISH_REASON_UNSPECIFIED };
        choices.set(d.index, c);
      }
      c.content += d.content;
      c.refusal += d.refusal;
      if (d.finishReason !== FinishReason.FINISH_REASON_UNSPECIFIED) c.finish = d.finishReason;
      for (const t of d.toolCalls) {
        const seen = c.tools.get(t.index);
        if (seen?.function) {
          seen.function.arguments += t.function?.arguments ?? "";
          if (t.function?.name && !seen.function.name) seen.function.name = t.function.name;
          if (t.id && !seen.id) seen.id = t.id;
        } else {
          c.tools.set(t.index, {
            id: t.id,
            type: t.type || "function",
            function: { name: t.function?.name ?? "", arguments: t.function?.arguments ?? "" },
          });
        }
      }
    }
  }
  out.choices = [...choices.entries()]
    .sort(([a], [b]) => a - b)
    .map(([index, c]) => ({
      index,
      message: {
        role: Role.ROLE_ASSISTANT,
        content: c.content,
        parts: [],
        name: "",
        toolCalls: [...c.tools.entries()].sort(([a], [b]) => a - b).map(([, t]) => t),
        toolCallId: "",
        refusal: c.refusal,
      },
      finishReason: c.finish === FinishReason.FINISH_REASON_UNSPECIFIED ? FinishReason.FINISH_REASON_STOP : c.finish,
    }));
  return out;
}

/**
 * Runs a speculative request's slow model to its end in the background, whether or not anyone waits: stores the
 * answer (or the failure) as the upgrade, and reports what the provider served under
 * {@link upgradeRequestId}, so the slow answer is billed on its own, at its own model's price.
 */
export async function runUpgrade(input: {
  id: string;
  context: RequestContext;
  modelRequested: string;
  events: AsyncIterable<RoutedEvent<ChatChunk>>;
  route: (model: string, attempts: number) => RouteInfo;
  tally: ServedUsage;
  store: RedisUpgradeStore;
  served: ServedUsageSink | undefined;
  traceId: string;
  logger: Logger;
}): Promise<void> {
  const { id, context, store, tally } = input;
  const chunks: ChatChunk[] = [];
  let route: RouteInfo | undefined;
  let status = "error";
  try {
    for await (const event of input.events) {
      if (event.type === "route") route = input.route(event.model, event.attempts);
      else chunks.push(event.chunk);
    }
    status = "ok";
    await store.put(id, {
      keyId: context.keyId,
      status: "ready",
      route,
      response: { ...foldChunks(chunks, route?.provider ?? ""), id },
    });
  } catch (err) {
    const e = toAppError(err);
    input.logger.warn({ err: e.message, upgrade_id: id }, "speculative slow model failed");
    await store.put(id, { keyId: context.keyId, status: "failed", route, error: e.message });
  } finally {
    await tally.settled();
    const totals = tally.result();
    if (totals !== undefined) {
      input.served?.record({ ...context, requestId: upgradeRequestId(context.requestId) }, totals, {
        modelRequested: input.modelRequested,
        status,
        endpoint: "chat",
        stream: false,
        traceId: input.traceId,
      });
    }
  }
}
