import { randomBytes } from "node:crypto";
import type { Logger } from "@tokenmesh/telemetry";
import type { Redis } from "ioredis";

/** How long `update` waits for every watching replica to confirm a change before it answers anyway (logged). */
const CONFIRM_MS = 2_000;
/** How long a change's confirmations are kept. */
const CONFIRM_TTL_S = 60;

/**
 * Which scopes (`key:<id>`, `team:<t>`, `user:<u>`) have a hard budget, shared by every gateway replica through the
 * gateway's own Redis keys (a set and its version counter). Kept exact, without a window:
 * - the admin API writes the set and bumps the version before `PUT /admin/budgets` answers (`update`);
 * - a replica that is not watching reads the version on every request (one GET) and reloads the set when it moved;
 * - a watching replica (`watch`: subscribed to the change channel) reads nothing per request. `update` publishes
 *   each change and answers only once every subscribed replica has confirmed it; a replica confirms after it has
 *   marked its copy stale, so its next request reads the version again. While its subscription is down a replica
 *   is not watching (it reads per request, as above) until it has subscribed again;
 * - budgets set another way reach the set through the cost service's ListHardScopes (`reconcile`, at start and
 *   periodically). Reconciling only adds: a scope removed by mistake could overspend, one kept by mistake only
 *   costs a Reserve call that holds nothing.
 * When Redis cannot be read, every scope counts as hard (Reserve then decides): fail closed.
 */
export class RedisHardScopes {
  private readonly setKey: string;
  private readonly versionKey: string;
  private readonly channel: string;
  private readonly confirmPrefix: string;
  private version: string | null | undefined;
  private scopes = new Set<string>();
  /** Subscribed to the change channel: the copy is current unless a change arrived since it was read. */
  private watching = false;
  /** Changes announced so far; the copy is current when it was read after the last of them. */
  private changes = 0;
  private readAtChange = -1;
  private subscriber: Redis | undefined;
  private readonly replica = randomBytes(8).toString("hex");

  constructor(
    private readonly redis: Redis,
    private readonly logger: Logger,
    prefix = "tm:gw:",
  ) {
    this.setKey = `${prefix}hard-scopes`;
    this.versionKey = `${prefix}hard-scopes:version`;
    this.channel = `${prefix}hard-scopes:changed`;
    this.confirmPrefix = `${prefix}hard-scopes:confirmed:`;
  }

  /**
   * Subscribes `subscriber` (a connection of its own, used for nothing else) to the change channel, so that requests
   * stop reading the version. Resolves once subscribed; resubscribes after a reconnect.
   */
  async watch(subscriber: Redis): Promise<void> {
    this.subscriber = subscriber;
    subscriber.on("message", (channel: string, version: string) => {
      if (channel !== this.channel) return;
      this.changes++;
      void this.confirm(version);
    });
    // Until subscribed again, a change may pass unseen: read per request meanwhile.
    const lost = () => {
      this.watching = false;
    };
    subscriber.on("close", lost);
    subscriber.on("reconnecting", lost);
    subscriber.on("ready", () => void this.subscribe());
    subscriber.on("error", (err: Error) => this.logger.debug({ err: err.message }, "hard budget scopes subscriber"));
    // A connection not up yet subscribes from its "ready" handler; requests read per request until then.
    await this.subscribe();
  }

  /** Whether requests are answered from the watched copy (no Redis read per request). */
  get isWatching(): boolean {
    return this.watching;
  }

  /** Stops watching (requests read the version again); closes the subscriber connection. */
  async unwatch(): Promise<void> {
    this.watching = false;
    const s = this.subscriber;
    this.subscriber = undefined;
    if (s !== undefined) await s.quit().catch(() => s.disconnect());
  }

  private async subscribe(): Promise<void> {
    const s = this.subscriber;
    if (s === undefined || s.status !== "ready") return;
    try {
      await s.subscribe(this.channel);
      // Whatever changed before the subscription took is read by the next request.
      this.changes++;
      this.watching = true;
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, "hard budget scopes: cannot subscribe; reading per request");
    }
  }

  /** Confirms a change once this replica's copy is marked stale (it is: `changes` moved before this runs). */
  private async confirm(version: string): Promise<void> {
    try {
      const key = this.confirmPrefix + version;
      await this.redis.multi().sadd(key, this.replica).expire(key, CONFIRM_TTL_S).exec();
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, "hard budget scopes: change not confirmed");
    }
  }

  /** Whether any of the scopes has a hard budget; true when that cannot be known. */
  async has(keyId: string, team: string, user: string): Promise<boolean> {
    if (!this.watching || this.readAtChange !== this.changes) {
      const at = this.changes;
      try {
        const version = await this.redis.get(this.versionKey);
        if (version !== this.version) {
          this.scopes = new Set(await this.redis.smembers(this.setKey));
          this.version = version;
        }
        this.readAtChange = at;
      } catch (err) {
        this.logger.warn({ err: (err as Error).message }, "hard budget scopes unreadable; reserving");
        return true;
      }
    }
    if (this.scopes.size === 0) return false;
    return (
      this.scopes.has(`key:${keyId}`) ||
      (team !== "" && this.scopes.has(`team:${team}`)) ||
      (user !== "" && this.scopes.has(`user:${user}`))
    );
  }

  /**
   * Records whether a scope has a hard budget now. Resolves once every watching replica has confirmed the change
   * (after `CONFIRM_MS` it resolves anyway and logs the replicas still silent); replicas not watching read it on
   * their next request.
   */
  async update(scope: string, id: string, hard: boolean): Promise<void> {
    const member = `${scope}:${id}`;
    const tx = this.redis.multi();
    if (hard) tx.sadd(this.setKey, member);
    else tx.srem(this.setKey, member);
    tx.incr(this.versionKey);
    const results = await tx.exec();
    const version = String(results?.at(-1)?.[1] ?? "");
    await this.announce(version, true);
  }

  /** Adds the scopes the cost service lists as hard (never removes; see the class comment). */
  async reconcile(listed: readonly string[]): Promise<number> {
    const missing = [];
    for (const s of listed) if (!(await this.redis.sismember(this.setKey, s))) missing.push(s);
    if (missing.length === 0) return 0;
    const results = await this.redis
      .multi()
      .sadd(this.setKey, ...missing)
      .incr(this.versionKey)
      .exec();
    await this.announce(String(results?.at(-1)?.[1] ?? ""), false);
    this.logger.info({ scopes: missing.length }, "hard budget scopes added from the cost service");
    return missing.length;
  }

  /** Publishes a change; with `confirmed`, waits until every replica that received it has confirmed it. */
  private async announce(version: string, confirmed: boolean): Promise<void> {
    const receivers = await this.redis.publish(this.channel, version);
    if (!confirmed || receivers === 0) return;
    const key = this.confirmPrefix + version;
    const until = Date.now() + CONFIRM_MS;
    for (;;) {
      const confirmedBy = await this.redis.scard(key);
      if (confirmedBy >= receivers) return;
      if (Date.now() >= until) {
        this.logger.warn(
          { version, receivers, confirmed: confirmedBy },
          "hard budget change not confirmed by every replica in time",
        );
        return;
      }
      await new Promise((r) => setTimeout(r, 2));
    }
  }
}
