import { jetstreamManager } from "@nats-io/jetstream";
import { connect, headers, type NatsConnection } from "@nats-io/transport-node";
import { uniqueName } from "@tokenmesh/testing";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { JetStreamAcks } from "../src/stream-acks.js";

const data = new TextEncoder().encode('{"x":1}');

/** A stream of its own, so tests sharing one server don't see each other. */
async function isolatedStream(nc: NatsConnection, config: { max_msg_size?: number } = {}) {
  const stream = uniqueName("ACKS").replace(/[^A-Za-z0-9_]/g, "_");
  const subject = `test.${stream}.events`;
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: stream, subjects: [subject], duplicate_window: 60_000_000_000, ...config });
  return { stream, subject, jsm };
}

describe("JetStreamAcks (publishes acknowledged on one inbox)", () => {
  let nc: NatsConnection;
  let acks: JetStreamAcks;
  beforeAll(async () => {
    nc = await connect({ servers: inject("natsUrl") });
    acks = new JetStreamAcks(nc);
  });
  afterAll(async () => {
    acks?.close();
    await nc?.drain();
  });

  it("resolves with the stream's PubAck; the same Nats-Msg-Id again is a duplicate of the stored message", async () => {
    const { stream, subject, jsm } = await isolatedStream(nc);
    const first = await acks.publish(subject, data, { msgID: "m-1", headers: headers(), timeout: 2_000 });
    expect(first).toMatchObject({ stream, seq: 1, duplicate: false });
    const again = await acks.publish(subject, data, { msgID: "m-1", headers: headers(), timeout: 2_000 });
    expect(again).toMatchObject({ stream, seq: 1, duplicate: true });
    const other = await acks.publish(subject, data, { msgID: "m-2", headers: headers(), timeout: 2_000 });
    expect(other).toMatchObject({ stream, seq: 2, duplicate: false });
    expect((await jsm.streams.info(stream)).state.messages).toBe(2);
    const stored = await jsm.streams.getMessage(stream, { seq: 2 });
    expect(stored?.header.get("Nats-Msg-Id")).toBe("m-2");
  });

  it("matches each of many concurrent publishes to its own ack", async () => {
    const { subject } = await isolatedStream(nc);
    const results = await Promise.all(
      Array.from({ length: 300 }, (_, i) =>
        acks.publish(subject, data, { msgID: `c-${i}`, headers: headers(), timeout: 5_000 }),
      ),
    );
    expect(new Set(results.map((r) => r.seq)).size).toBe(300);
    expect(results.every((r) => !r.duplicate)).toBe(true);
  });

  it("rejects at once when no stream takes the subject (NATS's no-responders answer)", async () => {
    const started = performance.now();
    await expect(
      acks.publish(`nowhere.${uniqueName("s")}`, data, { msgID: "n-1", headers: headers(), timeout: 10_000 }),
    ).rejects.toThrow(/no responders/);
    // Answered by the server, not by the 10 s deadline.
    expect(performance.now() - started).toBeLessThan(5_000);
  });

  it("rejects with the stream's own error when it refuses the message", async () => {
    const { subject } = await isolatedStream(nc, { max_msg_size: 4 });
    await expect(acks.publish(subject, data, { msgID: "big", headers: headers(), timeout: 2_000 })).rejects.toThrow(
      /JetStream refused the publish/,
    );
  });

  it("rejects a publish nobody acknowledges by its deadline, and ignores the answer that comes after", async () => {
    const subject = `silent.${uniqueName("s")}`;
    const late: string[] = [];
    // A subscriber that keeps the reply subjects and answers only when told: the publish has a responder, no ack.
    const sub = nc.subscribe(subject, {
      callback: (_err, msg) => {
        if (msg.reply) late.push(msg.reply);
      },
    });
    try {
      await nc.flush();
      // A publish with a later deadline came first (the timer is armed for it): this one's deadline still holds.
      const fresh = new JetStreamAcks(nc);
      const { subject: slow } = await isolatedStream(nc);
      const other = fresh.publish(slow, data, { msgID: "t-0", headers: headers(), timeout: 10_000 });
      const started = performance.now();
      await expect(fresh.publish(subject, data, { msgID: "t-1", headers: headers(), timeout: 150 })).rejects.toThrow(
        /no JetStream acknowledgement in time/,
      );
      expect(performance.now() - started).toBeLessThan(2_000);
      await other;
      fresh.close();
      expect(late).toHaveLength(1);
      // The late ack finds nobody waiting; a later publish still gets its own answer.
      nc.publish(late[0]!, new TextEncoder().encode('{"stream":"X","seq":9}'));
      const { stream, subject: live } = await isolatedStream(nc);
      await expect(
        acks.publish(live, data, { msgID: "t-2", headers: headers(), timeout: 2_000 }),
      ).resolves.toMatchObject({ stream, seq: 1 });
    } finally {
      sub.unsubscribe();
    }
  });
});
