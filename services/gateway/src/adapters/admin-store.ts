import type { Redis } from "ioredis";
import type { AdminRecord } from "../domain/admin-access.js";
import type { AdminStore } from "../domain/ports.js";

const CACHE_TTL_MS = 500;

/**
 * Admin credentials in Redis, laid out like virtual keys: `tm:admin:<id>` holds the record (JSON),
 * `tm:adminhash:<sha256>` the id, `tm:admins` the set of ids. Lookups by hash are cached for 500 ms (misses too),
 * so a revoked credential stops working on every replica within a second.
 */
export class RedisAdminStore implements AdminStore {
  private readonly cache = new Map<string, { record: AdminRecord | undefined; until: number }>();

  constructor(private readonly redis: Redis) {}

  async create(record: AdminRecord): Promise<void> {
    await this.redis
      .multi()
      .set(`tm:admin:${record.id}`, JSON.stringify(record))
      .set(`tm:adminhash:${record.hash}`, record.id)
      .sadd("tm:admins", record.id)
      .exec();
  }

  async list(): Promise<AdminRecord[]> {
    const ids = await this.redis.smembers("tm:admins");
    if (ids.length === 0) return [];
    const raw = await this.redis.mget(ids.map((id) => `tm:admin:${id}`));
    return raw.filter((r): r is string => r !== null).map((r) => JSON.parse(r) as AdminRecord);
  }

  async get(id: string): Promise<AdminRecord | undefined> {
    const raw = await this.redis.get(`tm:admin:${id}`);
    return raw ? (JSON.parse(raw) as AdminRecord) : undefined;
  }

  async revoke(id: string): Promise<boolean> {
    const record = await this.get(id);
    if (!record) return false;
    await this.redis.multi().del(`tm:admin:${id}`).del(`tm:adminhash:${record.hash}`).srem("tm:admins", id).exec();
    this.cache.delete(record.hash);
    return true;
  }

  async byHash(hash: string): Promise<AdminRecord | undefined> {
    const now = Date.now();
    const hit = this.cache.get(hash);
    if (hit && hit.until > now) return hit.record;
    const id = await this.redis.get(`tm:adminhash:${hash}`);
    const record = id ? await this.get(id) : undefined;
    if (this.cache.size > 10_000) this.cache.clear();
    this.cache.set(hash, { record, until: now + CACHE_TTL_MS });
    return record;
  }
}
