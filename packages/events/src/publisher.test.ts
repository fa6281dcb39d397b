import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import type { JetStreamClient, PubAck } from "@nats-io/jetstream";
import { UsageRecorded } from "@tokenmesh/proto/events/v1/events";
import { createLogger } from "@tokenmesh/telemetry";
import { describe, expect, it } from "vitest";
import { EventPublisher } from "./publisher.js";
import { UsageRecordedEvent } from "./subjects.js";

const logger = createLogger({ service: "publisher-test", level: "silent" });
/** The next turn of the event loop. */
const nextTurn = () => new Promise<void>((r) => setImmediate(r));

/**
 * A JetStream client that acks everything and notes, for each publish, the value of `clock.turn` at that moment:
 * the test advances the clock from its own timers, so publishes that share a write share a turn number.
 */
function recordingJs(clock: { turn: number }) {
  const sent: { msgId: string; turn: number }[] = [];
  const js = {
    publish: async (_subject: string, _data: Uint8Array, opts: { msgID: string }): Promise<PubAck> => {
      sent.push({ msgId: opts.msgID, turn: clock.turn });
      return { stream: "TEST", seq: sent.length, duplicate: false, domain: "" } as PubAck;
    },
  } as unknown as JetStreamClient;
  return { js, sent };
}

/** Publishes three events in three turns of the event loop (0, 1, 2) and waits until all are acked. */
async function publishThreeApart(publisher: EventPublisher, clock: { turn: number }) {
  const acks: Promise<PubAck>[] = [];
  for (let i = 0; i < 3; i++) {
    if (i > 0) {
      await nextTurn();
      clock.turn = i;
    }
    acks.push(
      publisher.publish(UsageRecordedEvent, UsageRecorded.fromPartial({ requestId: `r${i}` }), { msgId: `e${i}` }),
    );
  }
  await Promise.all(acks);
}

describe("EventPublisher's linger", () => {
  it("sends events accepted within lingerMs together, in order, after the last of them", async () => {
    const clock = { turn: 0 };
    const { js, sent } = recordingJs(clock);
    await publishThreeApart(new EventPublisher({ js, logger, name: "test", lingerMs: 200 }), clock);
    expect(sent).toEqual([
      { msgId: "e0", turn: 2 },
      { msgId: "e1", turn: 2 },
      { msgId: "e2", turn: 2 },
    ]);
  });

  it("without it sends each event at the end of the turn that accepted it", async () => {
    const clock = { turn: 0 };
    const { js, sent } = recordingJs(clock);
    await publishThreeApart(new EventPublisher({ js, logger, name: "test" }), clock);
    expect(sent.map((s) => s.turn)).toEqual([0, 1, 2]);
  });
});

describe("EventPublisher's memory", () => {
  it("lets an acknowledged event go at once, not at the next compaction of its queue", async () => {
    // A full GC on demand (V8's gc(), exposed after start).
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const sent: WeakRef<Uint8Array>[] = [];
    const js = {
      publish: async (_subject: string, data: Uint8Array): Promise<PubAck> => {
        sent.push(new WeakRef(data));
        return { stream: "TEST", seq: sent.length, duplicate: false, domain: "" } as PubAck;
      },
    } as unknown as JetStreamClient;
    const publisher = new EventPublisher({ js, logger, name: "test" });
    await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        publisher.publish(UsageRecordedEvent, UsageRecorded.fromPartial({ requestId: `r${i}` }), { msgId: `e${i}` }),
      ),
    );
    expect(publisher.depth).toBe(0);
    await nextTurn();
    gc();
    // Without letting go, all ten stayed in the queue until ~1,000 more had been acknowledged.
    expect(sent).toHaveLength(10);
    expect(sent.filter((ref) => ref.deref() !== undefined)).toHaveLength(0);
  });
});
