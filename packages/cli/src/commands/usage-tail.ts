import type { UsageRecorded } from "@tokenmesh/proto/events/v1/events";
import type { TailFilter } from "../args.js";
import { CliError } from "../errors.js";
import { formatUsageLine } from "../format.js";
import type { Output } from "../output.js";

export interface UsageTailOptions {
  /** NATS servers, comma-separated. */
  natsUrl: string;
  filter: TailFilter;
  /** One canonical JSON event per line instead of text. */
  json: boolean;
  out: Output;
  /** Progress and problems (the "listening" line, reconnects, malformed events). */
  err: Output;
  /** Ends the tail (Ctrl-C, SIGTERM); the promise then resolves. */
  signal: AbortSignal;
}

/** Whether an event passes every filter given; `model` matches the requested or the serving model. */
export function matchesFilter(u: UsageRecorded, f: TailFilter): boolean {
  if (f.key !== undefined && u.keyId !== f.key) return false;
  if (f.team !== undefined && u.team !== f.team) return false;
  if (f.model !== undefined && u.modelRequested !== f.model && u.model !== f.model) return false;
  return true;
}

interface Source {
  messages: AsyncIterable<{ data: Uint8Array }>;
  /** How the tail follows the subject, for the "listening" line. */
  how: string;
  /** Ends `messages`; idempotent. */
  stop(): Promise<void>;
}

/**
 * Prints every `UsageRecorded` event published from the moment it is subscribed until `signal` aborts, one line
 * each, written as it arrives. The "listening" line goes to `err` once the subscription is in place on the server,
 * so an event published after it is never missed.
 *
 * It follows the `LLM_USAGE` stream with an ordered JetStream consumer, which resumes where it left off after a
 * NATS reconnect (no gap); without that stream (or JetStream), it falls back to a core subscription, which misses
 * events published while disconnected. Throws CliError when NATS cannot be reached or closes the connection.
 */
export async function usageTail(options: UsageTailOptions): Promise<void> {
  const { out, err, signal } = options;
  // Loaded here, not at the top: @tokenmesh/events brings in OpenTelemetry (~1 s), which admin commands don't need.
  const [{ connect }, { decodeEvent, UsageRecordedEvent }] = await Promise.all([
    import("@nats-io/transport-node"),
    import("@tokenmesh/events"),
  ]);
  if (signal.aborted) return;

  let nc: Awaited<ReturnType<typeof connect>>;
  try {
    nc = await connect({
      servers: options.natsUrl.split(",").map((s) => s.trim()),
      name: "tokenmesh-cli",
      timeout: 5_000,
      // After the first connect, ride out NATS restarts instead of exiting mid-tail.
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
    });
  } catch (e) {
    throw new CliError(`cannot connect to NATS at ${options.natsUrl}: ${(e as Error).message}`, { cause: e });
  }

  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === "disconnect") err.write("tokenmesh: NATS disconnected; reconnecting…\n");
      else if (s.type === "reconnect") err.write("tokenmesh: NATS reconnected\n");
    }
  })();

  try {
    const source = await subscribe(nc, UsageRecordedEvent, err);
    const onAbort = () => void source.stop();
    signal.addEventListener("abort", onAbort, { once: true });
    if (signal.aborted) await source.stop();
    err.write(
      `tokenmesh: listening on ${UsageRecordedEvent.subject} (${source.how}) at ${options.natsUrl}; Ctrl-C to stop\n`,
    );
    try {
      for await (const m of source.messages) {
        let usage: UsageRecorded;
        try {
          usage = decodeEvent(UsageRecordedEvent, m.data);
        } catch (e) {
          err.write(`tokenmesh: skipping a malformed event: ${(e as Error).message}\n`);
          continue;
        }
        if (!matchesFilter(usage, options.filter)) continue;
        out.write(
          `${options.json ? JSON.stringify(UsageRecordedEvent.codec.toJSON(usage)) : formatUsageLine(usage)}\n`,
        );
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      await source.stop();
    }
    if (!signal.aborted) throw new CliError("the NATS connection closed");
  } finally {
    await nc.close().catch(() => undefined);
  }
}

type Nats = Awaited<ReturnType<typeof import("@nats-io/transport-node").connect>>;

async function subscribe(nc: Nats, type: { subject: string; stream: string }, err: Output): Promise<Source> {
  const { jetstream, jetstreamManager } = await import("@nats-io/jetstream");
  let lastSeq: number;
  try {
    const jsm = await jetstreamManager(nc);
    lastSeq = (await jsm.streams.info(type.stream)).state.last_seq;
  } catch (e) {
    err.write(
      `tokenmesh: stream ${type.stream} unavailable (${(e as Error).message}); following the subject directly, ` +
        "so events published while NATS is unreachable are missed\n",
    );
    const sub = nc.subscribe(type.subject);
    // The subscription exists on the server once the server has answered a ping sent after it.
    await nc.flush();
    return {
      messages: sub,
      how: "core subscription",
      stop: async () => {
        if (!sub.isClosed()) sub.unsubscribe();
      },
    };
  }
  // Not DeliverPolicy.New: an ordered consumer recreated (after a reconnect) before its first message restarts
  // from its initial cursor, which for New is the start of the stream — 30 days of history. An explicit start
  // sequence is where it restarts instead, and it misses nothing published after the stream info was read.
  let consumer: Awaited<ReturnType<ReturnType<typeof jetstream>["consumers"]["get"]>>;
  let messages: Awaited<ReturnType<typeof consumer.consume>>;
  try {
    consumer = await jetstream(nc).consumers.get(type.stream, {
      // One subject as a string: the client sends it as filter_subject, which servers before 2.10 also accept.
      filter_subjects: type.subject,
      opt_start_seq: lastSeq + 1,
    });
    messages = await consumer.consume();
  } catch (e) {
    throw new CliError(`cannot follow stream ${type.stream}: ${(e as Error).message}`, { cause: e });
  }
  let stopped: Promise<void> | undefined;
  return {
    messages,
    how: `ordered consumer on stream ${type.stream}`,
    stop: () => {
      stopped ??= (async () => {
        messages.stop();
        // Ordered consumers are ephemeral (removed 5 minutes after their client goes); remove ours now.
        await consumer.delete().catch(() => undefined);
      })();
      return stopped;
    },
  };
}
