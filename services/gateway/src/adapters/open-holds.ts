import { randomUUID } from "node:crypto";
import type { UsageRecorded } from "@tokenmesh/proto/events/v1/events";
import type { Logger } from "@tokenmesh/telemetry";
import type { Redis } from "ioredis";
import type { OpenHold, OpenHolds, UsageSink } from "../domain/ports.js";

/** The error code of the usage event that settles a dead replica's hold. */
export const GATEWAY_LOST = "gateway_lost";
/** Fields removed per script call (Lua's `unpack` has a stack limit). */
const CHUNK = 500;

// Forgets the swept fields of a dead replica's holds and, once none is left, the replica. A no-op when the replica's
// heartbeat is back (it was only slow), so a sweep never deletes holds a live replica still owns; idempotent when
// two replicas sweep at once.
// KEYS: alive, holds, replicas. ARGV: the replica id, then the fields.
const FORGET = `
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
if #ARGV > 1 then redis.call('HDEL', KEYS[2], unpack(ARGV, 2)) end
local left = redis.call('HLEN', KEYS[2])
if left == 0 then redis.call('SREM', KEYS[3], ARGV[1]) end
return left
`;

export interface RedisOpenHoldsOptions {
  redis: Redis;
  /** Where the settling events of a dead replica's holds go (the normal usage sink). */
  sink: UsageSink;
  logger: Logger;
  /** A replica whose heartbeat is this old is dead; the heartbeat is refreshed every third of it. */
  ttlMs: number;
  /** How often this replica looks for dead replicas' holds. */
  sweepMs: number;
  /** Key prefix (tests use their own). */
  prefix?: string;
  /**
   * The usage outbox journal's hash (`RedisOutboxJournal`, field = request id): a hold whose event waits there is
   * left to the journal's recovery, which publishes the real event (a settling event first would make JetStream
   * drop it as a duplicate).
   */
  journalKey?: string;
  /** This replica's id; random by default. */
  id?: string;
}

/**
 * Open hard-budget holds in Redis, per gateway replica, so that the holds of a replica killed between Reserve and
 * its usage event do not wait for cost's reservation timeout.
 *
 * Keys (prefix `tm:gw:`): `alive:<id>` (heartbeat, PX ttl, refreshed every ttl/3), `replicas` (set of ids),
 * `holds:<id>` (hash: reservation id → the hold's facts as JSON). Every `sweepMs`, each replica publishes, for
 * every hold of every registered replica whose heartbeat is gone, a usage event through the sink: status "error",
 * error code `gateway_lost`, zero tokens, `requestId` the hold's request (its Nats-Msg-Id: if the dead replica's own
 * event was stored, JetStream drops this one) and `reservationId` the hold (which the ledger settles; a router's
 * report of the same request still counts, the ledger keeping the larger). Then it forgets the holds whose event
 * was stored, and the replica once none is left. Two replicas sweeping at once publish duplicates that JetStream
 * drops and delete idempotently.
 *
 * A replica that stalls past `ttlMs` (event loop, Redis unreachable) is taken for dead: its open holds are settled
 * at zero and its requests' own later events are dropped as duplicates (a routed request is still billed from the
 * router's report). Keep `ttlMs` well above any expected stall.
 */
export class RedisOpenHolds implements OpenHolds {
  readonly id: string;
  private readonly prefix: string;
  private beat: NodeJS.Timeout | undefined;
  private sweeper: NodeJS.Timeout | undefined;
  private sweeping: Promise<number> | undefined;
  /** Removals waiting for their event to be stored, awaited by `stop`. */
  private readonly closing = new Set<Promise<void>>();

  constructor(private readonly options: RedisOpenHoldsOptions) {
    this.id = options.id ?? randomUUID();
    this.prefix = options.prefix ?? "tm:gw:";
  }

  private get alive(): string {
    return this.aliveKey(this.id);
  }

  private aliveKey(id: string): string {
    return `${this.prefix}alive:${id}`;
  }

  private holdsKey(id: string): string {
    return `${this.prefix}holds:${id}`;
  }

  private get replicas(): string {
    return `${this.prefix}replicas`;
  }

  /** Registers this replica and starts its heartbeat and the sweep of dead replicas' holds. */
  async start(): Promise<void> {
    await this.heartbeat();
    this.beat = setInterval(
      () => {
        this.heartbeat().catch((err: unknown) => this.options.logger.warn({ err }, "open holds: heartbeat failed"));
      },
      Math.max(1, Math.floor(this.options.ttlMs / 3)),
    );
    this.beat.unref();
    this.sweeper = setInterval(() => {
      this.sweep().catch((err: unknown) => this.options.logger.warn({ err }, "open holds: sweep failed"));
    }, this.options.sweepMs);
    this.sweeper.unref();
  }

  private async heartbeat(): Promise<void> {
    // The set first: a replica alive but not registered would never be swept.
    await this.options.redis.multi().sadd(this.replicas, this.id).set(this.alive, "1", "PX", this.options.ttlMs).exec();
  }

  async open(hold: OpenHold): Promise<void> {
    await this.options.redis.hset(this.holdsKey(this.id), hold.reservationId, JSON.stringify(hold));
  }

  close(reservationId: string, stored: void | Promise<void>): void {
    const done = Promise.resolve(stored).then(
      () =>
        this.options.redis
          .hdel(this.holdsKey(this.id), reservationId)
          .then(() => undefined)
          .catch((err: unknown) =>
            this.options.logger.warn({ err, reservation_id: reservationId }, "open hold not removed"),
          ),
      // Never stored: the hold stays open, settled by another replica once this one is gone.
      () => undefined,
    );
    this.closing.add(done);
    void done.finally(() => this.closing.delete(done));
  }

  /**
   * Settles the open holds of every registered replica whose heartbeat is gone (one sweep at a time); resolves to
   * the number of settling events stored.
   */
  sweep(): Promise<number> {
    this.sweeping ??= this.sweepOnce().finally(() => {
      this.sweeping = undefined;
    });
    return this.sweeping;
  }

  private async sweepOnce(): Promise<number> {
    const { redis } = this.options;
    let settled = 0;
    for (const id of await redis.smembers(this.replicas)) {
      if (id === this.id || (await redis.exists(this.aliveKey(id))) === 1) continue;
      settled += await this.reap(id);
    }
    return settled;
  }

  private async reap(id: string): Promise<number> {
    const { redis, sink, logger, journalKey } = this.options;
    const flat = await redis.hgetall(this.holdsKey(id));
    const fields = Object.keys(flat);
    /** Fields to forget: settled, left to the journal, or unreadable. */
    const done: string[] = [];
    let settled = 0;
    const publishing: Promise<void>[] = [];
    for (const field of fields) {
      const hold = parseHold(flat[field]!);
      if (hold === undefined) {
        done.push(field);
        continue;
      }
      if (journalKey !== undefined && (await redis.hexists(journalKey, hold.requestId)) === 1) {
        done.push(field);
        continue;
      }
      publishing.push(
        Promise.resolve(sink.record(lostEvent(hold))).then(
          () => {
            done.push(field);
            settled++;
          },
          (err: unknown) => logger.warn({ err, request_id: hold.requestId }, "open holds: settling event not stored"),
        ),
      );
    }
    await Promise.all(publishing);
    if (fields.length > 0 && done.length === 0) return 0;
    // An empty `done` (no holds at all) still runs once, to unregister the replica.
    for (let i = 0; i === 0 || i < done.length; i += CHUNK) {
      await redis.eval(FORGET, 3, this.aliveKey(id), this.holdsKey(id), this.replicas, id, ...done.slice(i, i + CHUNK));
    }
    if (settled > 0) logger.info({ replica: id, holds: settled }, "open holds of a lost gateway replica settled");
    return settled;
  }

  /**
   * Stops the heartbeat and the sweep, waits (up to `waitMs`) for the removals of holds whose events are still on
   * their way, then deletes the heartbeat; with no hold left it also unregisters the replica, otherwise the holds
   * left are settled by another replica's sweep. Call it after the in-flight requests ended and before Redis closes.
   */
  async stop(waitMs = 5_000): Promise<void> {
    clearInterval(this.beat);
    clearInterval(this.sweeper);
    this.beat = undefined;
    this.sweeper = undefined;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all([...this.closing, this.sweeping?.catch(() => 0)]),
      new Promise((resolve) => {
        timer = setTimeout(resolve, waitMs);
      }),
    ]);
    clearTimeout(timer);
    const { redis } = this.options;
    await redis.del(this.alive);
    await redis.eval(FORGET, 3, this.alive, this.holdsKey(this.id), this.replicas, this.id);
  }
}

function parseHold(json: string): OpenHold | undefined {
  try {
    return JSON.parse(json) as OpenHold;
  } catch {
    return undefined;
  }
}

/** The usage event that settles a dead replica's hold: nothing is known of the request's outcome, so no tokens. */
function lostEvent(hold: OpenHold): UsageRecorded {
  return {
    requestId: hold.requestId,
    timestamp: new Date().toISOString(),
    keyId: hold.keyId,
    team: hold.team,
    user: hold.user,
    modelRequested: hold.modelRequested,
    model: "",
    provider: "",
    inputTokens: 0,
    outputTokens: 0,
    cachedTokens: 0,
    cacheHit: false,
    status: "error",
    errorCode: GATEWAY_LOST,
    latencyMs: 0,
    ttftMs: 0,
    traceId: "",
    endpoint: "",
    stream: false,
    reservationId: hold.reservationId,
    estimated: false,
    discardedOutputTokens: 0,
    routeReason: "",
    cacheKind: "",
    cacheSimilarity: 0,
  };
}
