import type { Redis } from "ioredis";
import type { KeyRecord } from "../domain/keys.js";

const CACHE_TTL_MS = 500;

/**
 * Virtual keys in Redis: `tm:key:<id>` holds the record (JSON), `tm:keyhash:<sha256>` the id, `tm:keys` the set
 * of ids. Lookups are cached in memory for 500 ms (misses too), so a revoked key stops working on every gateway
 * replica within a second without a Redis round trip per request.
 */
export class RedisKeyStore {
  private readonly cache = new Map<string, { record: KeyRecord | undefined; until: number }>();

  constructor(private readonly redis: Redis) {}

  async create(record: KeyRecord): Promise<void> {
    await this.redis
      .multi()
      .set(`tm:key:${record.id}`, JSON.stringify(record))
      .set(`tm:keyhash:${record.hash}`, record.id)
      .sadd("tm:keys", record.id)
      .exec();
  }

  async list(): Promise<KeyRecord[]> {
    const ids = await this.redis.smembers("tm:keys");
    if (ids.length === 0) return [];
    const raw = await this.redis.mget(ids.map((id) => `tm:key:${id}`));
    return raw.filter((r): r is string => r !== null).map((r) => JSON.parse(r) as KeyRecord);
  }

  async get(id: string): Promise<KeyRecord | undefined> {
    const raw = await this.redis.get(`tm:key:${id}`);
    return raw ? (JSON.parse(raw) as KeyRecord) : undefined;
  }

  /** Deletes a key; returns false when it did not exist. */
  async revoke(id: string): Promise<boolean> {
    const record = await this.get(id);
    if (!record) return false;
    await this.redis.multi().del(`tm:key:${id}`).del(`tm:keyhash:${record.hash}`).srem("tm:keys", id).exec();
    this.cache.delete(record.hash);
    return true;
  }

  /** The record whose secret hashes to `hash`, from a 500 ms cache or Redis. */
  async byHash(hash: string): Promise<KeyRecord | undefined> {
    const now = Date.now();
    const hit = this.cache.get(hash);
    if (hit && hit.until > now) return hit.record;
    const id = await this.redis.get(`tm:keyhash:${hash}`);
    const record = id ? await this.get(id) : undefined;
    if (this.cache.size > 100_000) this.cache.clear();
    this.cache.set(hash, { record, until: now + CACHE_TTL_MS });
    return record;
  }
}
