import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { decodeEvent, EventPublisher, type EventType, RedisOutboxJournal, UsageRecordedEvent } from "@tokenmesh/events";
import { UsageRecorded } from "@tokenmesh/proto/events/v1/events";
import { createLogger } from "@tokenmesh/telemetry";
import { startNatsServer, waitFor } from "@tokenmesh/testing";
import { Redis } from "ioredis";
import { describe, expect, inject, it } from "vitest";

const logger = createLogger({ service: "outbox-test", level: "silent" });

function usage(requestId: string): UsageRecorded {
  return UsageRecorded.fromPartial({
    requestId,
    timestamp: new Date().toISOString(),
    keyId: "k",
    model: "m",
    inputTokens: 1,
    outputTokens: 1,
    status: "ok",
  });
}

/** A journal that counts its writes. */
class CountingJournal extends RedisOutboxJournal {
  saves = 0;
  override save(...args: Parameters<RedisOutboxJournal["save"]>) {
    this.saves++;
    return super.save(...args);
  }
}

describe.each([0, 50])("the usage outbox journal (journalAfterMs %i)", (journalAfterMs) => {
  it("publishes, exactly once, the events a gateway accepted before it died during a NATS outage", async () => {
    // Our own store dir, so the server can be stopped (the outage) and a new one started on the same data.
    const storeDir = await mkdtemp(join(tmpdir(), "journal-nats-"));
    let server = await startNatsServer({ storeDir });
    const redis = new Redis(inject("redisUrl"));
    const name = `test-${randomUUID()}`;
    const type: EventType<UsageRecorded> = { ...UsageRecordedEvent, subject: "journal.usage", stream: "JOURNAL" };
    const first = await connect({ servers: server.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    try {
      await (await jetstreamManager(first)).streams.add({
        name: "JOURNAL",
        subjects: ["journal.usage"],
        storage: "file" as never,
      });
      const journal = new CountingJournal(redis, name);
      const dying = new EventPublisher({
        js: jetstream(first),
        logger,
        name: "dying",
        ackTimeoutMs: 200,
        journal,
        journalAfterMs,
      });
      // Ten events reach JetStream, then NATS goes away and ninety more are only accepted.
      for (let i = 0; i < 10; i++) dying.publish(type, usage(`j-${i}`), { msgId: `j-${i}` });
      await dying.flush(5_000);
      // With a delay, events acknowledged in time never touch the journal; without one, each is written once.
      expect(journal.saves).toBe(journalAfterMs > 0 ? 0 : 10);
      await server.stop();
      for (let i = 10; i < 100; i++) dying.publish(type, usage(`j-${i}`), { msgId: `j-${i}` });
      expect(dying.depth).toBe(90);
      // The process dies: its in-memory outbox is gone, the journal is not.
      dying.close();
      await first.close();
      await waitFor(async () => (await redis.hlen(`tm:outbox:${name}`)) === 90, {
        timeoutMs: 5_000,
        description: "90 journaled events",
      });

      server = await startNatsServer({ storeDir, port: server.port });
      const second = await connect({ servers: server.url });
      try {
        const heir = new EventPublisher({
          js: jetstream(second),
          logger,
          name: "heir",
          journal: new RedisOutboxJournal(redis, name),
        });
        expect(await heir.recover(0)).toBe(90);
        await heir.flush(10_000);
        await waitFor(async () => (await redis.hlen(`tm:outbox:${name}`)) === 0, {
          timeoutMs: 5_000,
          description: "an empty journal",
        });
        // A second recovery finds nothing, and the stream holds each event once.
        expect(await heir.recover(0)).toBe(0);
        const info = await (await jetstreamManager(second)).streams.info("JOURNAL");
        expect(info.state.messages).toBe(100);
        const ids = new Set<string>();
        const batch = await (await jetstream(second).consumers.get("JOURNAL")).fetch({
          max_messages: 100,
          expires: 5_000,
        });
        for await (const m of batch) {
          ids.add(decodeEvent(type, m.data).requestId);
          if (ids.size === 100) break;
        }
        expect(ids.size).toBe(100);
      } finally {
        await second.close();
      }
    } finally {
      await redis.del(`tm:outbox:${name}`);
      await redis.quit();
      await server.stop();
      await rm(storeDir, { recursive: true, force: true });
    }
  });
});
