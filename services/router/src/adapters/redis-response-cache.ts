import { ChatChunk } from "@tokenmesh/proto/common/v1/chat";
import type { Logger } from "@tokenmesh/telemetry";
import type { Redis } from "ioredis";
import {
  AnswerCompletion,
  type AnswerRecorder,
  type CachedAnswer,
  type RecordOutcome,
  type ResponseCache,
} from "../domain/cache.js";
import type { CachePolicy } from "../domain/routes.js";
import { routerMetrics } from "../metrics.js";

// The stored value: {"v":1,"model":"<catalog id>","chunks":[<ChatChunk as proto3 JSON>, ...]}, one string key per
// entry with a PX expiry. JSON (not protobuf bytes) so an operator can read an entry with redis-cli.
const ENTRY_VERSION = 1;

/** Options of {@link RedisResponseCache}. */
export interface RedisResponseCacheOptions {
  /** Key prefix shared with the router's other Redis keys; entries live under `<prefix>cache:<sha256>`. */
  prefix?: string;
  /** A lookup slower than this reads as a miss, so a struggling Redis slows no request by more than this. */
  lookupTimeoutMs?: number;
}

/**
 * The exact response cache in Redis, shared by every router replica. Lookups never throw and wait at most
 * `lookupTimeoutMs`; writes are fire-and-forget (see {@link settled}). When Redis is not connected, lookups miss
 * and writes are skipped at once (both logged and counted) instead of queueing behind a reconnect.
 */
export class RedisResponseCache implements ResponseCache<ChatChunk> {
  private readonly prefix: string;
  private readonly lookupTimeoutMs: number;
  private readonly pending = new Set<Promise<void>>();

  constructor(
    private readonly redis: Redis,
    private readonly logger: Logger,
    options: RedisResponseCacheOptions = {},
  ) {
    this.prefix = options.prefix ?? "tokenmesh:router:";
    this.lookupTimeoutMs = options.lookupTimeoutMs ?? 250;
  }

  async lookup(key: string): Promise<CachedAnswer<ChatChunk> | undefined> {
    let raw: string | null;
    try {
      if (this.redis.status !== "ready") throw new Error(`redis is ${this.redis.status}`);
      raw = await withTimeout(this.redis.get(this.redisKey(key)), this.lookupTimeoutMs);
    } catch (err) {
      routerMetrics.cacheLookupFailures.inc();
      this.logger.warn({ err: (err as Error).message }, "cache lookup failed; treating it as a miss");
      return undefined;
    }
    if (raw === null) return undefined;
    try {
      return decodeEntry(raw);
    } catch (err) {
      routerMetrics.cacheLookupFailures.inc();
      this.logger.warn({ err: (err as Error).message, key }, "unreadable cache entry; treating it as a miss");
      return undefined;
    }
  }

  record(key: string, model: string, policy: Pick<CachePolicy, "ttlMs" | "maxEntryBytes">): AnswerRecorder<ChatChunk> {
    const completion = new AnswerCompletion();
    const head = `{"v":${ENTRY_VERSION},"model":${JSON.stringify(model)},"chunks":[`;
    let parts: string[] | undefined = [];
    let bytes = Buffer.byteLength(head) + 2;
    return {
      add: (chunk) => {
        completion.observe(chunk);
        if (parts === undefined) return;
        const json = JSON.stringify(ChatChunk.toJSON(chunk));
        bytes += Buffer.byteLength(json) + 1;
        // Past the limit the answer will never be stored: drop what was kept rather than hold it to the end.
        if (bytes > policy.maxEntryBytes) parts = undefined;
        else parts.push(json);
      },
      finish: (): RecordOutcome => {
        if (!completion.complete) return "incomplete";
        if (parts === undefined) return "too_large";
        this.store(key, `${head}${parts.join(",")}]}`, policy.ttlMs);
        return "stored";
      },
    };
  }

  /** Resolves once every write started so far has ended (stored or failed); for tests and orderly shutdowns. */
  async settled(): Promise<void> {
    await Promise.all([...this.pending]);
  }

  private store(key: string, value: string, ttlMs: number): void {
    if (this.redis.status !== "ready") {
      this.storeFailed(new Error(`redis is ${this.redis.status}`), key);
      return;
    }
    const write: Promise<void> = this.redis
      .set(this.redisKey(key), value, "PX", ttlMs)
      .then(
        () => undefined,
        (err: unknown) => this.storeFailed(err, key),
      )
      .finally(() => this.pending.delete(write));
    this.pending.add(write);
  }

  private storeFailed(err: unknown, key: string): void {
    routerMetrics.cacheStoreFailures.inc();
    this.logger.warn({ err: (err as Error).message, key }, "cache store failed; the answer was not cached");
  }

  private redisKey(key: string): string {
    return `${this.prefix}cache:${key}`;
  }
}

function decodeEntry(raw: string): CachedAnswer<ChatChunk> {
  const entry = JSON.parse(raw) as { v?: unknown; model?: unknown; chunks?: unknown };
  if (entry.v !== ENTRY_VERSION || typeof entry.model !== "string" || !Array.isArray(entry.chunks)) {
    throw new Error("unexpected cache entry format");
  }
  return { model: entry.model, chunks: entry.chunks.map((c) => ChatChunk.fromJSON(c)) };
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
