import { type EventPublisher, UsageRecordedEvent } from "@tokenmesh/events";
import type { UsageRecorded } from "@tokenmesh/proto/events/v1/events";
import type { Logger } from "@tokenmesh/telemetry";
import type { UsageSink } from "../domain/ports.js";

/**
 * Usage events into JetStream through the outbox, with `Nats-Msg-Id` = request id so a retried publish is
 * stored once. A full outbox (NATS down for long) is logged loudly and counted by the publisher's metrics.
 */
export class JetStreamUsageSink implements UsageSink {
  constructor(
    private readonly publisher: EventPublisher,
    private readonly logger: Logger,
  ) {}

  /** Resolves once JetStream stored the event; rejects when the outbox refused it (it will never be stored). */
  record(event: UsageRecorded): Promise<void> {
    try {
      return this.publisher.publish(UsageRecordedEvent, event, { msgId: event.requestId }).then(() => undefined);
    } catch (err) {
      this.logger.error({ err, request_id: event.requestId }, "usage event not accepted");
      return Promise.reject(err);
    }
  }
}
