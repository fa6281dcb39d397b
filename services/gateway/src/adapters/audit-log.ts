import { AuditTrailEvent, decodeEvent, type EventPublisher, type JetStreamClient } from "@tokenmesh/events";
import type { AuditEvent } from "@tokenmesh/proto/events/v1/events";
import type { Logger } from "@tokenmesh/telemetry";
import type { AdminRole, AuditEntry, AuditQuery } from "../domain/admin-access.js";
import type { AuditLog } from "../domain/ports.js";
import { metrics } from "../metrics.js";

/** How long an admin change waits for JetStream to store its audit event before answering anyway. */
const ACK_WAIT_MS = 2_000;
/** `GET /admin/audit` reads at most this many of the newest events of the stream. */
export const AUDIT_SCAN_MAX = 10_000;
const FETCH_BATCH = 500;

function toEvent(e: AuditEntry): AuditEvent {
  return {
    requestId: e.requestId,
    timestamp: e.time.toISOString(),
    actor: { ...e.actor },
    action: e.action,
    targetType: e.targetType,
    targetId: e.targetId,
    team: e.team,
    summary: e.summary,
    sourceIp: e.sourceIp,
  };
}

function fromEvent(e: AuditEvent): AuditEntry {
  return {
    requestId: e.requestId,
    time: new Date(e.timestamp ?? 0),
    actor: {
      credentialId: e.actor?.credentialId ?? "",
      name: e.actor?.name ?? "",
      role: (e.actor?.role ?? "admin") as AdminRole,
      team: e.actor?.team ?? "",
    },
    action: e.action as AuditEntry["action"],
    targetType: e.targetType as AuditEntry["targetType"],
    targetId: e.targetId,
    team: e.team,
    summary: e.summary,
    sourceIp: e.sourceIp,
  };
}

function matches(e: AuditEntry, q: AuditQuery): boolean {
  return (
    (q.actor === undefined || e.actor.credentialId === q.actor) &&
    (q.action === undefined || e.action === q.action) &&
    (q.since === undefined || e.time >= q.since) &&
    (q.team === undefined || e.team === q.team)
  );
}

/**
 * The audit trail on the LLM_AUDIT stream. Events go through an outbox publisher (journaled in Redis, so a change
 * made during a NATS outage is audited once NATS is back, even from another replica) with the admin request's id
 * as `Nats-Msg-Id`: one change, one stored event. Listing reads the newest {@link AUDIT_SCAN_MAX} events with an
 * ordered consumer and filters them here (the audit trail is small; no server-side index is needed).
 */
export class JetStreamAuditLog implements AuditLog {
  constructor(
    private readonly deps: {
      publisher: () => EventPublisher | undefined;
      js: () => JetStreamClient | undefined;
      logger: Logger;
    },
  ) {}

  async record(entry: AuditEntry): Promise<void> {
    const publisher = this.deps.publisher();
    const log = this.deps.logger.child({ request_id: entry.requestId, action: entry.action });
    if (!publisher) {
      metrics.auditEvents.inc({ action: entry.action, outcome: "error" });
      log.error({ audit: toEvent(entry) }, "audit event lost: publisher not started");
      return;
    }
    let acked: Promise<unknown>;
    try {
      acked = publisher.publish(AuditTrailEvent, toEvent(entry), { msgId: entry.requestId });
    } catch (err) {
      // The outbox is full (NATS unreachable for long): the change is done, so it is logged in full instead.
      metrics.auditEvents.inc({ action: entry.action, outcome: "error" });
      log.error({ err, audit: toEvent(entry) }, "audit event not accepted");
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<"late">((resolve) => {
      timer = setTimeout(() => resolve("late"), ACK_WAIT_MS);
    });
    try {
      // Waiting for the ack lets the caller read its own change back from GET /admin/audit.
      const outcome = await Promise.race([acked.then(() => "ok" as const), late]);
      metrics.auditEvents.inc({ action: entry.action, outcome });
      if (outcome === "late") log.warn("audit event not yet stored; the outbox keeps sending it");
    } catch (err) {
      metrics.auditEvents.inc({ action: entry.action, outcome: "error" });
      log.warn({ err }, "audit event publish failed; the outbox keeps sending it");
    } finally {
      clearTimeout(timer);
    }
  }

  async list(query: AuditQuery): Promise<{ events: AuditEntry[]; truncated: boolean }> {
    const js = this.deps.js();
    if (!js) return { events: [], truncated: false };
    const jsm = await js.jetstreamManager();
    const { state } = await jsm.streams.info(AuditTrailEvent.stream);
    if (state.messages === 0 || state.last_seq < state.first_seq) return { events: [], truncated: false };
    const last = state.last_seq;
    const start = Math.max(state.first_seq, last - AUDIT_SCAN_MAX + 1);
    const consumer = await js.consumers.get(AuditTrailEvent.stream, {
      deliver_policy: "by_start_sequence",
      opt_start_seq: start,
    });
    // Keeps only the newest `limit` matches while scanning forward.
    const kept: AuditEntry[] = [];
    let dropped = false;
    let seq = start - 1;
    while (seq < last) {
      const batch = await consumer.fetch({ max_messages: Math.min(FETCH_BATCH, last - seq), expires: 2_000 });
      let got = 0;
      for await (const m of batch) {
        got++;
        seq = m.seq;
        try {
          const entry = fromEvent(decodeEvent(AuditTrailEvent, m.data));
          if (matches(entry, query)) {
            kept.push(entry);
            if (kept.length > query.limit) {
              kept.shift();
              dropped = true;
            }
          }
        } catch (err) {
          this.deps.logger.warn({ err, seq: m.seq }, "unreadable audit event skipped");
        }
        if (seq >= last) break;
      }
      // Messages removed by the stream's age limit while scanning leave nothing more to read.
      if (got === 0) break;
    }
    await consumer.delete().catch(() => undefined);
    return { events: kept.reverse(), truncated: dropped || start > state.first_seq };
  }
}
