import type { JetStreamClient, PubAck } from "@nats-io/jetstream";
import { type MsgHdrs, headers as natsHeaders } from "@nats-io/transport-node";
import { AppError, afterLinger } from "@tokenmesh/runtime";
import { context, counter, gauge, type Logger, propagation } from "@tokenmesh/telemetry";
import type { StreamPublish } from "./stream-acks.js";
import { type EventType, encodeEvent } from "./subjects.js";

const metrics = {
  depth: gauge("tokenmesh_events_outbox_depth", "Events waiting in a publisher's outbox", ["publisher"]),
  published: counter("tokenmesh_events_published_total", "Events stored by JetStream, by subject", [
    "subject",
    "duplicate",
  ]),
  retries: counter("tokenmesh_events_publish_retries_total", "Publish attempts that failed and will be retried", [
    "subject",
  ]),
  rejected: counter("tokenmesh_events_outbox_rejected_total", "Events refused because the outbox was full", [
    "subject",
  ]),
};

/** The outbox is full: NATS has been unreachable for too long. The event was NOT accepted. */
export class OutboxFullError extends AppError {
  constructor(subject: string, capacity: number) {
    super("UNAVAILABLE", `event outbox full (${capacity} pending); ${subject} not accepted`, { retryable: true });
    this.name = "OutboxFullError";
  }
}

/** An event as kept in a journal: enough to publish it again from another process. */
export interface JournalRecord {
  subject: string;
  /** The payload, base64. */
  data: string;
  headers: Record<string, string>;
  /** When it was first accepted (ms since the epoch). */
  at: number;
}

/**
 * Durable storage for events not yet acknowledged by JetStream (e.g. a Redis hash shared by every replica of a
 * service), so events accepted by a process that dies — or is restarted during a NATS outage — are published by
 * the next one. Records are keyed by Nats-Msg-Id: publishing one twice is harmless (JetStream drops the
 * duplicate within the stream's window, and consumers are idempotent by id beyond it).
 */
export interface OutboxJournal {
  save(msgId: string, record: JournalRecord): Promise<void>;
  remove(msgId: string): Promise<void>;
  /** Records accepted more than `olderThanMs` ago and still not removed. */
  stale(olderThanMs: number): Promise<{ msgId: string; record: JournalRecord }[]>;
}

interface Entry {
  subject: string;
  data: Uint8Array;
  msgId: string;
  headers: MsgHdrs;
  state: "pending" | "sending" | "done";
  /** The journal write waiting for `journalAfterMs` (cleared when the ack comes first). */
  journalTimer?: NodeJS.Timeout | undefined;
  /** Whether the event was written to the journal (and so must be removed from it once stored). */
  journaled?: boolean;
  waiters: { resolve: (ack: PubAck) => void; reject: (err: Error) => void }[];
}

/**
 * What an acknowledged event's slot in the queue holds until the queue is compacted: the event itself is let go at
 * once. Kept there, every event stayed reachable for the ~1,000 events before the next compaction (~2 s at 500
 * requests/s), outlived the young-generation GCs in between and was promoted, only to die in the old generation:
 * the largest share of what the gateway promoted (bench/gateway/README.md, stop 22).
 */
const DONE: Entry = {
  subject: "",
  data: new Uint8Array(0),
  msgId: "",
  headers: natsHeaders(),
  state: "done",
  waiters: [],
};

export interface EventPublisherOptions {
  /** Where events go: {@link JetStreamAcks} over the service's connection (a `jetstream(nc)` client works too). */
  js: StreamPublish;
  logger: Logger;
  /** Name for metrics and logs. */
  name: string;
  /** Events held while NATS is unreachable; beyond it, publish throws OutboxFullError. */
  capacity?: number;
  /** Publishes awaiting their ack at once. */
  window?: number;
  /** How long to wait for a PubAck before trying again. */
  ackTimeoutMs?: number;
  /** Keeps each event until JetStream acknowledges it; see {@link OutboxJournal}. */
  journal?: OutboxJournal;
  /**
   * Journal an event only if JetStream has not acknowledged it within this many ms (0, the default: journal every
   * event as it is accepted). On the happy path an ack takes about a millisecond, so a small delay saves two
   * journal writes per event; the price is that an event accepted less than this long before the process is
   * killed, and not yet acknowledged, is in neither JetStream nor the journal.
   */
  journalAfterMs?: number;
  /**
   * How long an accepted event may wait for others to share its socket write (ms; 0, the default: until the end of
   * the event-loop turn). At moderate rates events arrive a few ms apart, and each lone publish wakes NATS and every
   * consumer once; a few ms of linger lets them travel together. An event is in memory only until JetStream acks it
   * or `journalAfterMs` passes, so a linger well under `journalAfterMs` does not change what a crash can lose.
   */
  lingerMs?: number;
}

/**
 * Publishes events to JetStream through a bounded in-memory outbox, so a short NATS outage loses nothing:
 * events are sent in order, each with `Nats-Msg-Id` (so a retry of an event the stream already stored is dropped
 * as a duplicate) and the W3C trace context active when `publish` was called. Failed sends are retried from the
 * oldest unacknowledged event with backoff. A full outbox throws instead of dropping silently.
 */
export class EventPublisher {
  private readonly queue: Entry[] = [];
  private head = 0;
  private sending = 0;
  private backoffMs = 0;
  private paused = false;
  private pumpScheduled = false;
  private closed = false;
  private readonly capacity: number;
  private readonly window: number;
  private readonly ackTimeoutMs: number;
  private readonly idle: (() => void)[] = [];
  private recoveryTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: EventPublisherOptions) {
    this.capacity = options.capacity ?? 100_000;
    this.window = options.window ?? 256;
    this.ackTimeoutMs = options.ackTimeoutMs ?? 3_000;
  }

  /** Events accepted and not yet acknowledged by JetStream. */
  get depth(): number {
    return this.queue.length - this.head;
  }

  /**
   * Accepts an event for publishing and returns a promise of its PubAck (callers may ignore it: the outbox retries
   * until the event is stored). Throws OutboxFullError synchronously when the outbox is full, and after `close`.
   */
  publish<T>(type: EventType<T>, message: T, options: { msgId: string }): Promise<PubAck> {
    if (this.closed) throw new AppError("UNAVAILABLE", "event publisher closed");
    if (this.depth >= this.capacity) {
      metrics.rejected.inc({ subject: type.subject });
      this.options.logger.error({ subject: type.subject, capacity: this.capacity }, "event outbox full; event refused");
      throw new OutboxFullError(type.subject, this.capacity);
    }
    const h = natsHeaders();
    propagation.inject(context.active(), h, { set: (carrier, k, v) => carrier.set(k, v) });
    const entry: Entry = {
      subject: type.subject,
      data: encodeEvent(type, message),
      msgId: options.msgId,
      headers: h,
      state: "pending",
      waiters: [],
    };
    const acked = new Promise<PubAck>((resolve, reject) => entry.waiters.push({ resolve, reject }));
    acked.catch(() => undefined);
    if (this.options.journal) {
      const delay = this.options.journalAfterMs ?? 0;
      if (delay > 0) {
        entry.journalTimer = setTimeout(() => this.journal(entry), delay);
        entry.journalTimer.unref();
      } else {
        this.journal(entry);
      }
    }
    this.queue.push(entry);
    metrics.depth.set({ publisher: this.options.name }, this.depth);
    this.schedulePump();
    return acked;
  }

  /** Writes an accepted, unacknowledged event to the journal (fire and forget: a failure is logged). */
  private journal(entry: Entry): void {
    const journal = this.options.journal;
    entry.journalTimer = undefined;
    if (!journal || entry.state === "done") return;
    entry.journaled = true;
    const headers: Record<string, string> = {};
    for (const k of entry.headers.keys()) headers[k] = entry.headers.get(k);
    // Issued before the removal that follows the ack, so on the same connection it lands first.
    journal
      .save(entry.msgId, {
        subject: entry.subject,
        data: Buffer.from(entry.data).toString("base64"),
        headers,
        at: Date.now(),
      })
      .catch((err: Error) =>
        this.options.logger.error({ err: err.message, msg_id: entry.msgId }, "outbox journal write failed"),
      );
  }

  /**
   * Publishes again every journal record older than `olderThanMs` (left by a process that died, or whose sends
   * are long overdue). Returns how many were queued. Call at start-up and periodically.
   */
  async recover(olderThanMs = 30_000): Promise<number> {
    const journal = this.options.journal;
    if (!journal || this.closed) return 0;
    const queued = new Set(this.queue.slice(this.head).map((e) => e.msgId));
    let n = 0;
    for (const { msgId, record } of await journal.stale(olderThanMs)) {
      if (queued.has(msgId) || this.depth >= this.capacity) continue;
      const h = natsHeaders();
      for (const [k, v] of Object.entries(record.headers)) h.set(k, v);
      this.queue.push({
        subject: record.subject,
        data: Buffer.from(record.data, "base64"),
        msgId,
        headers: h,
        state: "pending",
        journaled: true,
        waiters: [],
      });
      n++;
    }
    if (n > 0) {
      this.options.logger.warn({ events: n }, "republishing events left in the outbox journal");
      metrics.depth.set({ publisher: this.options.name }, this.depth);
      this.pump();
    }
    return n;
  }

  /**
   * Recovers the journal now (events a dead replica, or this process before a restart, accepted but never got
   * stored), then every `olderThanMs / 2` until `stopRecovery` or `close`. The timer does not keep the process alive.
   */
  async startRecovery(olderThanMs = 30_000): Promise<void> {
    await this.recover(olderThanMs);
    if (this.closed || this.recoveryTimer !== undefined) return;
    this.recoveryTimer = setInterval(() => {
      this.recover(olderThanMs).catch((err: Error) =>
        this.options.logger.warn({ err: err.message, publisher: this.options.name }, "outbox recovery failed"),
      );
    }, olderThanMs / 2);
    this.recoveryTimer.unref();
  }

  /** Stops the periodic recovery (first step of a shutdown). */
  stopRecovery(): void {
    clearInterval(this.recoveryTimer);
    this.recoveryTimer = undefined;
  }

  /** Resolves when every accepted event is stored, or rejects after `timeoutMs`. */
  async flush(timeoutMs: number): Promise<void> {
    if (this.depth === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => this.idle.push(resolve)),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new AppError("UNAVAILABLE", `${this.depth} events still unpublished after ${timeoutMs} ms`)),
          timeoutMs,
        );
      }),
    ]).finally(() => clearTimeout(timer));
  }

  /** Refuses new events; what is queued keeps being sent until `flush` or process exit. */
  close(): void {
    this.closed = true;
    this.stopRecovery();
  }

  /**
   * Sends what was accepted at the end of this turn of the event loop (or after `lingerMs`) rather than at once:
   * events accepted in one turn (requests finishing on the same batch of socket reads) then leave in one socket
   * write, their acks come back in one read, instead of a write and a read each.
   */
  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    afterLinger(this.options.lingerMs ?? 0, () => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    if (this.paused) return;
    for (let i = this.head; i < this.queue.length && this.sending < this.window; i++) {
      const entry = this.queue[i]!;
      if (entry.state !== "pending") continue;
      this.send(entry);
    }
  }

  private send(entry: Entry): void {
    entry.state = "sending";
    this.sending++;
    this.options.js
      .publish(entry.subject, entry.data, {
        msgID: entry.msgId,
        headers: entry.headers,
        timeout: this.ackTimeoutMs,
        retries: 0,
      })
      .then(
        (ack) => {
          this.sending--;
          entry.state = "done";
          this.backoffMs = 0;
          metrics.published.inc({ subject: entry.subject, duplicate: String(ack.duplicate) });
          if (entry.journalTimer !== undefined) {
            clearTimeout(entry.journalTimer);
            entry.journalTimer = undefined;
          }
          if (entry.journaled) {
            this.options.journal
              ?.remove(entry.msgId)
              .catch((err: Error) => this.options.logger.warn({ err: err.message }, "outbox journal removal failed"));
          }
          for (const w of entry.waiters) w.resolve(ack);
          entry.waiters = [];
          this.advance();
          this.pump();
        },
        (err: Error) => {
          this.sending--;
          entry.state = "pending";
          metrics.retries.inc({ subject: entry.subject });
          this.retryLater(err);
        },
      );
  }

  private retryLater(err: Error): void {
    if (this.paused) return;
    this.paused = true;
    this.backoffMs = Math.min(2_000, this.backoffMs === 0 ? 50 : this.backoffMs * 2);
    this.options.logger.warn(
      { err: err.message, depth: this.depth, retry_in_ms: this.backoffMs },
      "event publish failed; retrying",
    );
    setTimeout(() => {
      this.paused = false;
      this.pump();
    }, this.backoffMs).unref();
  }

  private advance(): void {
    while (this.head < this.queue.length && this.queue[this.head]!.state === "done") this.queue[this.head++] = DONE;
    // Compact occasionally so the array does not grow without bound.
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    metrics.depth.set({ publisher: this.options.name }, this.depth);
    if (this.depth === 0) for (const r of this.idle.splice(0)) r();
  }
}

/**
 * Publishes one event and waits for JetStream's acknowledgement, with `Nats-Msg-Id` and the active trace context,
 * without an outbox: for a caller that answers only once the event is stored (a job submission) and reports a
 * failure to its own caller. Rejects on a timeout or a refusal, in which case the event may still have been stored
 * (the ack was lost): publish again with the same id, or treat the outcome as unknown.
 */
export async function publishEvent<T>(
  js: JetStreamClient,
  type: EventType<T>,
  message: T,
  options: { msgId: string; timeoutMs?: number },
): Promise<PubAck> {
  const h = natsHeaders();
  propagation.inject(context.active(), h, { set: (carrier, k, v) => carrier.set(k, v) });
  const ack = await js.publish(type.subject, encodeEvent(type, message), {
    msgID: options.msgId,
    headers: h,
    timeout: options.timeoutMs ?? 5_000,
  });
  metrics.published.inc({ subject: type.subject, duplicate: String(ack.duplicate) });
  return ack;
}
