import type { PubAck } from "@nats-io/jetstream";
import { createInbox, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { AppError } from "@tokenmesh/runtime";

/** The publish options EventPublisher sends with every event. */
export interface StreamPublishOptions {
  /** Sent as `Nats-Msg-Id`: JetStream stores an id once within the stream's duplicate window. */
  msgID: string;
  headers: MsgHdrs;
  /** How long to wait for the stream's acknowledgement (ms). */
  timeout: number;
  /** For the `@nats-io/jetstream` client (EventPublisher sends 0); JetStreamAcks never retries: the outbox does. */
  retries?: number;
}

/**
 * What EventPublisher needs of a JetStream client: a publish that resolves with the stream's acknowledgement. The
 * `@nats-io/jetstream` client is one; {@link JetStreamAcks} is the one the services use.
 */
export interface StreamPublish {
  publish(subject: string, data: Uint8Array, options: StreamPublishOptions): Promise<PubAck>;
}

const utf8 = new TextDecoder();

interface Waiter {
  resolve: (ack: PubAck) => void;
  reject: (err: Error) => void;
  /** performance.now() after which the publish counts as unacknowledged. */
  deadline: number;
}

/** A stream's answer to a publish (JetStream's PubAck, or its API error). */
interface AckBody {
  stream?: string;
  seq?: number;
  duplicate?: boolean;
  domain?: string;
  error?: { code?: number; err_code?: number; description?: string };
}

/**
 * JetStream publishes with their acknowledgements read from one inbox subscription, and one timer for all of
 * their deadlines.
 *
 * `jetstream(nc).publish` sends each event as a NATS request: per event a request object, a deadline timer, and, once
 * the answer arrived, a "cancelled" error with a captured stack trace (nats-core ends every answered request that
 * way), ~1.2 % of the gateway's CPU at 1,000 chat requests/s. Here an event is a plain publish with a reply subject
 * under this object's inbox (`<inbox>.<n>`); the answer is matched by `<n>`. What the stream answers is the same:
 * a PubAck (`duplicate` when the `Nats-Msg-Id` was stored before), an API error, or, when no stream takes the
 * subject, NATS's 503 "no responders"; a publish with no answer by its deadline is rejected, and the caller (the
 * outbox) sends it again under the same id. An answer that comes after that is ignored.
 */
export class JetStreamAcks implements StreamPublish {
  private readonly prefix = createInbox();
  private subscription: Subscription | undefined;
  private sequence = 0;
  /** Unanswered publishes by the token that ends their reply subject. */
  private readonly waiting = new Map<string, Waiter>();
  private timer: NodeJS.Timeout | undefined;
  /** The deadline the timer is set for. */
  private timerAt = 0;

  constructor(private readonly nc: NatsConnection) {}

  /** Publishes with `Nats-Msg-Id` and resolves with the stream's PubAck; rejects on an error, 503 or the deadline. */
  publish(subject: string, data: Uint8Array, options: StreamPublishOptions): Promise<PubAck> {
    this.subscription ??= this.nc.subscribe(`${this.prefix}.*`, {
      callback: (err, msg) => {
        if (err === null) this.answer(msg);
      },
    });
    const token = (this.sequence++).toString(36);
    options.headers.set("Nats-Msg-Id", options.msgID);
    return new Promise<PubAck>((resolve, reject) => {
      try {
        this.nc.publish(subject, data, { reply: `${this.prefix}.${token}`, headers: options.headers });
      } catch (err) {
        // A closed connection, a subject NATS refuses: nothing was sent.
        reject(err as Error);
        return;
      }
      const deadline = performance.now() + options.timeout;
      this.waiting.set(token, { resolve, reject, deadline });
      // One timer, for the earliest deadline: under steady traffic each new deadline is later, and nothing re-arms.
      if (this.timer === undefined || deadline < this.timerAt) this.arm(deadline);
    });
  }

  /** Rejects what is still waiting and stops listening (the connection's close also ends the subscription). */
  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.subscription?.unsubscribe();
    this.subscription = undefined;
    for (const w of this.waiting.values()) w.reject(new AppError("UNAVAILABLE", "JetStream publisher closed"));
    this.waiting.clear();
  }

  private answer(msg: Msg): void {
    const token = msg.subject.slice(this.prefix.length + 1);
    const waiter = this.waiting.get(token);
    if (waiter === undefined) return; // past its deadline, already rejected
    this.waiting.delete(token);
    if (msg.data.length === 0 && msg.headers?.code === 503) {
      waiter.reject(new AppError("UNAVAILABLE", "no JetStream stream answered (no responders)", { retryable: true }));
      return;
    }
    let body: AckBody;
    try {
      body = JSON.parse(utf8.decode(msg.data)) as AckBody;
    } catch {
      waiter.reject(new AppError("INTERNAL", "JetStream answered a publish with something other than JSON"));
      return;
    }
    if (body.error !== undefined) {
      const e = body.error;
      waiter.reject(
        new AppError(
          "UNAVAILABLE",
          `JetStream refused the publish: ${e.description ?? "error"} (${e.err_code ?? e.code})`,
        ),
      );
    } else if (typeof body.stream !== "string" || body.stream === "" || typeof body.seq !== "number") {
      waiter.reject(new AppError("INTERNAL", "invalid JetStream ack"));
    } else {
      waiter.resolve({
        stream: body.stream,
        seq: body.seq,
        duplicate: body.duplicate === true,
        domain: body.domain ?? "",
      });
    }
  }

  private arm(deadline: number): void {
    clearTimeout(this.timer);
    this.timerAt = deadline;
    this.timer = setTimeout(() => this.expire(), Math.max(1, deadline - performance.now()));
    this.timer.unref();
  }

  /** Rejects every publish past its deadline and re-arms the timer for the earliest one left. */
  private expire(): void {
    this.timer = undefined;
    const now = performance.now();
    let next = Number.POSITIVE_INFINITY;
    for (const [token, w] of this.waiting) {
      if (w.deadline <= now) {
        this.waiting.delete(token);
        w.reject(new AppError("UNAVAILABLE", "no JetStream acknowledgement in time", { retryable: true }));
      } else if (w.deadline < next) {
        next = w.deadline;
      }
    }
    if (next !== Number.POSITIVE_INFINITY) this.arm(next);
  }
}
