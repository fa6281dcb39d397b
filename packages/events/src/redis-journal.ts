import type { JournalRecord, OutboxJournal } from "./publisher.js";

/** The few Redis commands the journal uses (an ioredis client fits). */
export interface JournalRedis {
  hset(key: string, field: string, value: string): Promise<unknown>;
  hdel(key: string, field: string): Promise<unknown>;
  hscan(key: string, cursor: string, countToken: "COUNT", count: number): Promise<[string, string[]]>;
}

/**
 * The event outbox's journal in one Redis hash shared by every replica of a service (`tm:outbox:<name>`, field =
 * the Nats-Msg-Id). A replica that dies with events not yet stored by JetStream leaves them here; any replica's
 * periodic `recover` publishes them again.
 */
export class RedisOutboxJournal implements OutboxJournal {
  /** The Redis hash holding the journal (field = msg id), for readers that check whether an event waits in it. */
  readonly key: string;

  constructor(
    private readonly redis: JournalRedis,
    name: string,
  ) {
    this.key = `tm:outbox:${name}`;
  }

  async save(msgId: string, record: JournalRecord): Promise<void> {
    await this.redis.hset(this.key, msgId, JSON.stringify(record));
  }

  async remove(msgId: string): Promise<void> {
    await this.redis.hdel(this.key, msgId);
  }

  async stale(olderThanMs: number): Promise<{ msgId: string; record: JournalRecord }[]> {
    const before = Date.now() - olderThanMs;
    const out: { msgId: string; record: JournalRecord }[] = [];
    let cursor = "0";
    do {
      const [next, flat] = await this.redis.hscan(this.key, cursor, "COUNT", 1000);
      cursor = next;
      for (let i = 0; i + 1 < flat.length; i += 2) {
        const record = JSON.parse(flat[i + 1]!) as JournalRecord;
        if (record.at <= before) out.push({ msgId: flat[i]!, record });
      }
    } while (cursor !== "0");
    return out;
  }
}
