import type { Logger } from "@tokenmesh/telemetry";
import type { Redis } from "ioredis";

/**
 * Which scopes (`key:<id>`, `team:<t>`, `user:<u>`) have a hard budget, shared by every gateway replica through the
 * gateway's own Redis keys (a set and its version counter). Kept exact, without a window:
 * - the admin API writes the set and bumps the version before `PUT /admin/budgets` answers (`update`);
 * - every request reads the version (one GET, auto-pipelined) and reloads the set only when it moved (`has`);
 * - budgets set another way reach the set through the cost service's ListHardScopes (`reconcile`, at start and
 *   periodically). Reconciling only adds: a scope removed by mistake could overspend, one kept by mistake only
 *   costs a Reserve call that holds nothing.
 * When Redis cannot be read, every scope counts as hard (Reserve then decides): fail closed.
 */
export class RedisHardScopes {
  private readonly setKey: string;
  private readonly versionKey: string;
  private version: string | null | undefined;
  private scopes = new Set<string>();

  constructor(
    private readonly redis: Redis,
    private readonly logger: Logger,
    prefix = "tm:gw:",
  ) {
    this.setKey = `${prefix}hard-scopes`;
    this.versionKey = `${prefix}hard-scopes:version`;
  }

  /** Whether any of the scopes has a hard budget; true when that cannot be known. */
  async has(keyId: string, team: string, user: string): Promise<boolean> {
    try {
      const version = await this.redis.get(this.versionKey);
      if (version !== this.version) {
        this.scopes = new Set(await this.redis.smembers(this.setKey));
        this.version = version;
      }
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, "hard budget scopes unreadable; reserving");
      return true;
    }
    if (this.scopes.size === 0) return false;
    return (
      this.scopes.has(`key:${keyId}`) ||
      (team !== "" && this.scopes.has(`team:${team}`)) ||
      (user !== "" && this.scopes.has(`user:${user}`))
    );
  }

  /** Records whether a scope has a hard budget now; every replica sees it on its next request. */
  async update(scope: string, id: string, hard: boolean): Promise<void> {
    const member = `${scope}:${id}`;
    const tx = this.redis.multi();
    if (hard) tx.sadd(this.setKey, member);
    else tx.srem(this.setKey, member);
    tx.incr(this.versionKey);
    await tx.exec();
  }

  /** Adds the scopes the cost service lists as hard (never removes; see the class comment). */
  async reconcile(listed: readonly string[]): Promise<number> {
    const missing = [];
    for (const s of listed) if (!(await this.redis.sismember(this.setKey, s))) missing.push(s);
    if (missing.length === 0) return 0;
    await this.redis
      .multi()
      .sadd(this.setKey, ...missing)
      .incr(this.versionKey)
      .exec();
    this.logger.info({ scopes: missing.length }, "hard budget scopes added from the cost service");
    return missing.length;
  }
}
