import { BudgetThresholdEvent, type EventPublisher } from "@tokenmesh/events";
import type { BudgetAlert } from "../domain/budget.js";
import { nanoToUsd } from "../domain/pricing.js";
import { costMetrics } from "../metrics.js";

/**
 * Publishes budget alerts on `llm.budget.threshold.v1` and resolves once JetStream stored every one. Each alert's
 * Nats-Msg-Id is its alert key (budget, period and threshold), so publishing the same alert again — after a crash,
 * from a redelivery, or from another replica — is dropped by the stream's duplicate window. Rejects when the
 * outbox refuses an event (it is full); the caller must then not acknowledge what raised the alerts.
 */
export async function publishAlerts(publisher: EventPublisher, alerts: BudgetAlert[], now: Date): Promise<void> {
  if (alerts.length === 0) return;
  const acks = alerts.map((a) =>
    publisher
      .publish(
        BudgetThresholdEvent,
        {
          scope: a.scope,
          id: a.id,
          period: a.period,
          periodKey: a.periodKey,
          spentUsd: nanoToUsd(a.spentNano),
          budgetUsd: nanoToUsd(a.limitNano),
          threshold: a.threshold,
          hard: a.hard,
          timestamp: now.toISOString(),
        },
        { msgId: a.key },
      )
      .then((ack) => {
        if (!ack.duplicate) costMetrics.alerts.inc({ scope: a.scope, period: a.period });
      }),
  );
  await Promise.all(acks);
}
