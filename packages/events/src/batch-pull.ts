import { createInbox, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { afterLinger, sleep } from "@tokenmesh/runtime";

/** What a handler needs of a delivered JetStream message: the part of `JsMsg` that `consumeEvents` uses. */
export interface DeliveredMsg {
  subject: string;
  data: Uint8Array;
  headers: MsgHdrs | undefined;
  seq: number;
  info: { deliveryCount: number };
  ack(): void;
  nak(millis?: number): void;
  term(): void;
  working(): void;
}

export interface BatchPullOptions {
  nc: NatsConnection;
  /** JetStream's API prefix (`$JS.API`, or `$JS.<domain>.API`). */
  apiPrefix: string;
  stream: string;
  durable: string;
  /** How long a partly filled batch waits before the next pull, so that the next one carries more. */
  intervalMs: number;
  /** Messages the caller can take now (its free handler slots); the pull waits in `waitRoom` while it is 0. */
  room(): number;
  waitRoom(): Promise<void>;
  deliver(m: DeliveredMsg): void;
  onError(err: Error): void;
  /** Past a pull's expiry, how long it waits for the server's status before it counts as refused (default 5 s). */
  statusGraceMs?: number;
}

/** A running batch puller. */
export interface BatchPuller {
  /** Stops pulling; messages delivered after this are not handled and come back after their ack wait. */
  stop(): Promise<void>;
  /** Pull requests sent so far (for tests and metrics). */
  readonly pulls: number;
}

/** A blocking pull that waited longer than this many intervals found a quiet stream: the next one blocks again. */
const QUIET_INTERVALS = 4;
/** How long a blocking pull waits on the server before it is renewed. */
const BLOCKING_EXPIRES_MS = 5_000;
/** Past its expiry, how long a pull waits for the server's terminating status before giving up on it. */
const STATUS_GRACE_MS = 5_000;
/** The pause after the server refused a pull (consumer deleted, no responders, …), so a refusal is not a busy loop. */
const REFUSED_PAUSE_MS = 1_000;

/**
 * Pulls a durable consumer's messages in batches instead of as each is stored, so that a busy consumer wakes (and
 * wakes the server) once per batch rather than once per message: JetStream's continuous pull delivers each message
 * the moment it is stored, and at a few hundred events a second every one is a wake-up of both processes and an ack
 * of its own.
 *
 * The loop: a `no_wait` pull takes what is pending, up to the free handler slots, at once. A full batch is followed
 * at once by the next pull; a partial one waits `intervalMs` first, so that the next gathers what arrived
 * meanwhile. An empty one turns into a blocking pull for a single message (no polling of an idle stream); when that
 * waited long the stream is quiet and the next pull blocks again, otherwise the batches resume. A message waits at
 * most `intervalMs` longer than under a continuous pull; delivery, acks and redelivery are JetStream's as before
 * (the wire protocol is the documented `CONSUMER.MSG.NEXT` request and `+ACK`/`-NAK`/`+TERM`/`+WPI` replies). Acks
 * given in one event-loop turn leave in one socket write.
 */
export function pullInBatches(options: BatchPullOptions): BatchPuller {
  const { nc, intervalMs } = options;
  const inbox = createInbox();
  const api = `${options.apiPrefix}.CONSUMER.MSG.NEXT.${options.stream}.${options.durable}`;
  const stopped = new AbortController();
  const stopping = () => stopped.signal.aborted;
  let pulls = 0;
  let current: { id: number; want: number; got: number; refused: string | undefined; done: () => void } | undefined;

  const replies = batchedReplies(nc);
  const sub: Subscription = nc.subscribe(`${inbox}.*`, {
    callback: (err, msg) => {
      if (err) {
        options.onError(err);
        return;
      }
      const status = msg.headers?.code ?? 0;
      if (status > 0 && msg.data.length === 0) {
        // Statuses come on the pull's own inbox subject and end it: 404 no messages and 408 request expired are the
        // ordinary ends; anything else (409 consumer deleted or too many pulls waiting, 503 no responders) is a refusal.
        if (current !== undefined && msg.subject === `${inbox}.${current.id}`) {
          if (status !== 404 && status !== 408) current.refused = `${status} ${msg.headers?.description ?? ""}`;
          current.done();
        }
        return;
      }
      // Messages keep their stream subject, so they count towards the pull in progress. One of an earlier pull that
      // was given up on is still handled: it is a delivery like any other.
      options.deliver(delivered(msg, replies));
      if (current !== undefined && ++current.got >= current.want) current.done();
    },
  });

  /**
   * Sends one pull and resolves with the number of messages it brought once the server ended it; rejects when the
   * server refused it.
   */
  const pull = (want: number, blockMs: number | undefined): Promise<number> =>
    new Promise((resolve, reject) => {
      const id = ++pulls;
      // No status at all past the pull's expiry: the consumer is gone or the server is not answering.
      const timer = setTimeout(
        () => {
          entry.refused = "no answer from the server (is the consumer there?)";
          entry.done();
        },
        (blockMs ?? 0) + (options.statusGraceMs ?? STATUS_GRACE_MS),
      );
      const entry = {
        id,
        want,
        got: 0,
        refused: undefined as string | undefined,
        done: () => {
          clearTimeout(timer);
          if (current === entry) current = undefined;
          if (entry.refused === undefined) resolve(entry.got);
          else reject(new Error(`pull refused: ${entry.refused}`));
        },
      };
      current = entry;
      const body =
        blockMs === undefined ? { batch: want, no_wait: true } : { batch: want, expires: blockMs * 1_000_000 };
      nc.publish(api, JSON.stringify(body), { reply: `${inbox}.${id}` });
    });

  /** Waits `ms`, or until `stop`. */
  const pause = (ms: number) => sleep(ms, stopped.signal).catch(() => undefined);

  const loop = async () => {
    let quiet = false;
    while (!stopping()) {
      try {
        if (options.room() <= 0) await options.waitRoom();
        if (stopping()) break;
        const room = options.room();
        if (room <= 0) {
          // Woken with no slot free after all: yield a turn rather than spin on microtasks.
          await new Promise((r) => setImmediate(r));
          continue;
        }
        if (quiet) {
          const started = performance.now();
          const got = await pull(1, BLOCKING_EXPIRES_MS);
          quiet = got === 0 || performance.now() - started > QUIET_INTERVALS * intervalMs;
          if (!quiet && !stopping()) await pause(intervalMs);
          continue;
        }
        const got = await pull(room, undefined);
        if (got === 0) quiet = true;
        else if (got < room && !stopping()) await pause(intervalMs);
      } catch (err) {
        options.onError(err as Error);
        if (!stopping()) await pause(REFUSED_PAUSE_MS);
      }
    }
  };
  const running = loop();
  // A pull waiting on the server is gone with the connection: after a reconnect, pull again at once rather than wait
  // for the lost pull's timer.
  void (async () => {
    for await (const s of nc.status()) {
      if (stopping()) break;
      if (s.type === "reconnect") current?.done();
    }
  })().catch(() => undefined);

  return {
    get pulls() {
      return pulls;
    },
    async stop() {
      stopped.abort();
      current?.done();
      await running;
      sub.unsubscribe();
      replies.flush();
    },
  };
}

/** Replies to the server (acks) queued within one event-loop turn and published together at its end. */
function batchedReplies(nc: NatsConnection) {
  let queue: Array<[string, string]> = [];
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    const out = queue;
    queue = [];
    try {
      for (const [subject, body] of out) nc.publish(subject, body);
    } catch {
      // The connection is closed: the unacknowledged messages come back after their ack wait, and recording them is
      // idempotent.
    }
  };
  return {
    send(subject: string, body: string) {
      queue.push([subject, body]);
      if (!scheduled) {
        scheduled = true;
        afterLinger(0, flush);
      }
    },
    flush,
  };
}

/**
 * A raw pulled message as a `DeliveredMsg`. Its reply subject is JetStream's ack subject, which also carries the
 * delivery count and the stream sequence: `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`,
 * or with `<domain>.<account hash>` after `$JS.ACK` and a token at the end (the v2 form).
 */
function delivered(msg: Msg, replies: ReturnType<typeof batchedReplies>): DeliveredMsg {
  const reply = msg.reply ?? "";
  const t = reply.split(".");
  const at = t.length === 9 ? 4 : 6;
  const deliveryCount = Number(t[at]) || 1;
  const seq = Number(t[at + 1]) || 0;
  let settled = false;
  const answer = (body: string, final: boolean) => {
    if (!reply || settled) return;
    if (final) settled = true;
    replies.send(reply, body);
  };
  return {
    subject: msg.subject,
    data: msg.data,
    headers: msg.headers,
    seq,
    info: { deliveryCount },
    ack: () => answer("+ACK", true),
    nak: (millis?: number) =>
      answer(millis && millis > 0 ? `-NAK ${JSON.stringify({ delay: millis * 1_000_000 })}` : "-NAK", true),
    term: () => answer("+TERM", true),
    working: () => answer("+WPI", false),
  };
}
