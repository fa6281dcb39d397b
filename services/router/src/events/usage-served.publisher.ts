import { type EventPublisher, UsageServedEvent } from "@tokenmesh/events";
import type { RequestContext } from "@tokenmesh/proto/common/v1/context";
import { UsageRecorded } from "@tokenmesh/proto/events/v1/events";
import type { Logger } from "@tokenmesh/telemetry";
import type { ServedTotals } from "../domain/served-usage.js";

/** Where the router reports what providers served a request. */
export interface ServedUsageSink {
  record(
    ctx: RequestContext | undefined,
    served: ServedTotals,
    facts: { modelRequested: string; status: string; endpoint: string; stream: boolean; traceId: string },
    /** 0 for a request's first report; later ones (its served usage grew, e.g. a hedge's loser ended) count up. */
    sequence?: number,
  ): void;
}

/**
 * Publishes `llm.usage.served.v1` (`Nats-Msg-Id` = `<request id>:served`) through the router's outbox, whose Redis
 * journal keeps it across a router restart during a NATS outage. A request without a minted id (a caller that sent
 * no context) is not reported: the gateway always sends one.
 */
export class JetStreamServedUsage implements ServedUsageSink {
  constructor(
    private readonly publisher: () => EventPublisher | undefined,
    private readonly logger: Logger,
  ) {}

  record(
    ctx: RequestContext | undefined,
    served: ServedTotals,
    facts: Parameters<ServedUsageSink["record"]>[2],
    sequence = 0,
  ): void {
    const requestId = ctx?.requestId ?? "";
    const publisher = this.publisher();
    if (requestId === "" || publisher === undefined) return;
    const event = UsageRecorded.fromPartial({
      requestId,
      timestamp: new Date().toISOString(),
      keyId: ctx?.keyId ?? "",
      team: ctx?.team ?? "",
      user: ctx?.user ?? "",
      modelRequested: facts.modelRequested,
      model: served.model,
      provider: served.provider,
      inputTokens: served.inputTokens,
      outputTokens: served.outputTokens,
      cachedTokens: served.cachedTokens,
      status: facts.status,
      traceId: facts.traceId,
      endpoint: facts.endpoint,
      stream: facts.stream,
      // The gateway holds hard budgets under the request id: a report from this side settles the hold too, so a
      // gateway that died does not leave it held until it times out.
      reservationId: requestId,
      estimated: served.estimated,
      discardedOutputTokens: served.discardedOutputTokens,
    });
    try {
      // Each report has its own msg id, so a later, larger report is not dropped as a duplicate of an earlier one;
      // the ledger bills the request once, at the largest.
      const msgId = sequence === 0 ? `${requestId}:served` : `${requestId}:served:${sequence}`;
      void publisher.publish(UsageServedEvent, event, { msgId });
    } catch (err) {
      this.logger.error({ err, request_id: requestId }, "served usage not accepted");
    }
  }
}
