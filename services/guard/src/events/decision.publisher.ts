import { randomUUID } from "node:crypto";
import { type EventPublisher, GuardDecisionEvent } from "@tokenmesh/events";
import { decisionMessageId, type GuardDecisionRecord } from "@tokenmesh/guard-policy";
import type { Logger } from "@tokenmesh/telemetry";

/** Where decisions go (a port, so handlers do not know about NATS). */
export interface DecisionSink {
  record(decision: GuardDecisionRecord): void;
}

/**
 * Publishes `GuardDecision` events on `llm.guard.decision.v1` through the outbox, with the `Nats-Msg-Id` of
 * {@link decisionMessageId} so a retried request's decision is stored once. Never throws: when the outbox refuses
 * an event (NATS down too long) the decision still applies and the loss is logged.
 */
export class NatsDecisionSink implements DecisionSink {
  constructor(
    private readonly publisher: () => EventPublisher | undefined,
    private readonly logger: Logger,
  ) {}

  record(d: GuardDecisionRecord): void {
    const publisher = this.publisher();
    const requestId = d.requestId || `anon-${randomUUID()}`;
    const event = {
      requestId,
      keyId: d.keyId,
      action: d.action,
      ruleIds: d.ruleIds,
      stage: d.stage,
      tier: d.tier,
      mode: d.mode,
      timestamp: new Date().toISOString(),
    };
    try {
      if (!publisher) throw new Error("event publisher not started");
      void publisher.publish(GuardDecisionEvent, event, { msgId: decisionMessageId({ ...d, requestId }) });
    } catch (err) {
      this.logger.error({ err, request_id: requestId, stage: d.stage }, "guard decision event not published");
    }
  }
}
