import { randomBytes } from "node:crypto";
import { type EventPublisher, UsageServedBatchEvent } from "@tokenmesh/events";
import type { RequestContext } from "@tokenmesh/proto/common/v1/context";
import { UsageRecorded } from "@tokenmesh/proto/events/v1/events";
import type { Logger } from "@tokenmesh/telemetry";
import type { ServedTotals } from "../domain/served-usage.js";

/** Where the router reports what providers served a request. */
export interface ServedUsageSink {
  /** Reports a request's served usage; a later report of the same request (its usage grew) supersedes it. */
  record(
    ctx: RequestContext | undefined,
    served: ServedTotals,
    facts: { modelRequested: string; status: string; endpoint: string; stream: boolean; traceId: string },
  ): void;
}

export interface BatchOptions {
  /** The longest a report waits before its batch is published (ms). */
  flushMs: number;
  /** Reports per batch at most; a full batch is published at once. */
  maxBatch: number;
}

/**
 * Publishes what providers served on `llm.usage.served.v2`, in batches: reports made within `flushMs` of each other
 * (at most `maxBatch`) travel as one message, `Nats-Msg-Id` = `<source>:<sequence>`, through the router's outbox,
 * whose Redis journal keeps a batch across a router restart during a NATS outage. One message per batch instead of
 * one per request is what makes this crash-safety copy cheap: the gateway reports every request too, and the ledger
 * bills each at the largest of its reports, so a report matters only when the gateway died or lost its client.
 * The price: a report is in memory only for up to `flushMs` (a router killed in that window loses it, which costs
 * usage only if the gateway of that request died too). A request without a minted id (a caller that sent no
 * context) is not reported: the gateway always sends one.
 */
export class JetStreamServedUsage implements ServedUsageSink {
  private pending: UsageRecorded[] = [];
  private timer: NodeJS.Timeout | undefined;
  private sequence = 0;
  /** Random per process, so two routers (or one router's two lives) never share a batch id. */
  private readonly source = `router-${randomBytes(6).toString("hex")}`;

  constructor(
    private readonly publisher: () => EventPublisher | undefined,
    private readonly logger: Logger,
    private readonly options: BatchOptions = { flushMs: 20, maxBatch: 256 },
  ) {}

  record(ctx: RequestContext | undefined, served: ServedTotals, facts: Parameters<ServedUsageSink["record"]>[2]): void {
    const requestId = ctx?.requestId ?? "";
    if (requestId === "" || this.publisher() === undefined) return;
    this.pending.push(
      UsageRecorded.fromPartial({
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
      }),
    );
    if (this.pending.length >= this.options.maxBatch) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), this.options.flushMs);
  }

  /** Hands the reports waiting to the outbox now (at shutdown, before the outbox is flushed). */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const reports = this.pending;
    if (reports.length === 0) return;
    this.pending = [];
    const publisher = this.publisher();
    if (publisher === undefined) return;
    try {
      void publisher.publish(
        UsageServedBatchEvent,
        { reports, source: this.source },
        { msgId: `${this.source}:${++this.sequence}` },
      );
    } catch (err) {
      this.logger.error(
        { err, reports: reports.length, request_ids: reports.map((r) => r.requestId).slice(0, 20) },
        "served usage not accepted",
      );
    }
  }
}
