import { type EventPublisher, GuardDecisionEvent } from "@tokenmesh/events";
import { decisionMessageId, type GuardDecisionRecord } from "@tokenmesh/guard-policy";
import type { Logger } from "@tokenmesh/telemetry";

/**
 * Publishes the in-process guard's decisions as `GuardDecision` events on `llm.guard.decision.v1` (rule ids only,
 * never matched text), with the `Nats-Msg-Id` of {@link decisionMessageId} so a retry is stored once. Never throws:
 * when NATS refuses the event the decision still applies and the loss is logged. Decision events are best effort
 * (no journal), unlike usage events.
 */
export function guardDecisionSink(
  publisher: () => EventPublisher | undefined,
  logger: Logger,
): (d: GuardDecisionRecord) => void {
  return (d) => {
    const p = publisher();
    try {
      if (!p) throw new Error("event publisher not started");
      const event = {
        requestId: d.requestId,
        keyId: d.keyId,
        action: d.action,
        ruleIds: d.ruleIds,
        stage: d.stage,
        tier: d.tier,
        mode: d.mode,
        timestamp: new Date().toISOString(),
      };
      p.publish(GuardDecisionEvent, event, { msgId: decisionMessageId(d) }).catch((err: unknown) =>
        logger.error({ err, request_id: d.requestId, stage: d.stage }, "guard decision event not published"),
      );
    } catch (err) {
      logger.error({ err, request_id: d.requestId, stage: d.stage }, "guard decision event not published");
    }
  };
}
