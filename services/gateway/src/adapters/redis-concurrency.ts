import { randomBytes } from "node:crypto";
import { abortedError, ResourceExhaustedError } from "@tokenmesh/runtime";
import type { Logger } from "@tokenmesh/telemetry";
import type { Redis } from "ioredis";
import type { ConcurrencyLease, ConcurrencyLimiter, ConcurrencyRequest, QueueSettings } from "../domain/concurrency.js";
import { priorityRank } from "../domain/priority.js";
import { metrics } from "../metrics.js";

/**
 * Every concurrency key shares the hash tag {tmcc}: one Redis Cluster slot, so a request's key, team and model
 * limits change in one atomic script. (The scripts name keys they compute; on a cluster that is sound only because
 * they all live on the slot of KEYS[1].)
 *
 * Per limit L (`key:<id>`, `team:<name>`, `model:<id>`):
 *   h:L            zset  holder request id → lease expiry (ms, Redis time)
 *   o:L:c          zset  waiting request id → arrival, per class c (3 interactive, 2 standard, 1 batch)
 *   r:L:c          zset  tenant → turn number: the tenant with the lowest goes next (round robin)
 *   q:L:c:tenant   list  the tenant's waiting request ids, first in first out
 *   n:L            the turn counter
 *   cap            hash  L → slots (written by every acquire from the catalog in force)
 *   w:rid          hash  a waiter: its limits (JSON [[L, tenant], ...]), stage (index of the limit it waits at),
 *                        class, arrival, replica, state q (queued) or g (granted)
 *   x              zset  waiter request id → expiry: a waiter whose replica stops polling leaves every queue
 *
 * Order at a limit (the same as the local engine's FairQueue): the class whose oldest waiter has the highest
 * `class + waited / aging` (ties: the higher class), then the tenant whose turn it is, then arrival. Slots are taken
 * in the request's limit order (key, team, model); a request waiting at one limit keeps the slots it took before it.
 *
 * A free slot is taken directly only when the limit's queue is empty; a released or expired slot goes to the head of
 * the queue inside the same script, which publishes the grant on `g:<replica>` for the waiter's gateway.
 */
const SCRIPT = `
local X = KEYS[1]
local P = string.sub(X, 1, -2)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local op = ARGV[1]
local lease, aging, wttl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])

local function hk(L) return P .. 'h:' .. L end
local function ok(L, c) return P .. 'o:' .. L .. ':' .. c end
local function rk(L, c) return P .. 'r:' .. L .. ':' .. c end
local function qk(L, c, tenant) return P .. 'q:' .. L .. ':' .. c .. ':' .. tenant end
local function wk(rid) return P .. 'w:' .. rid end

local function used(L)
  redis.call('ZREMRANGEBYSCORE', hk(L), '-inf', now)
  return redis.call('ZCARD', hk(L))
end
local function depth(L)
  return redis.call('ZCARD', ok(L, 3)) + redis.call('ZCARD', ok(L, 2)) + redis.call('ZCARD', ok(L, 1))
end
local function capOf(L) return tonumber(redis.call('HGET', P .. 'cap', L) or '0') end
local function hold(L, rid)
  redis.call('ZADD', hk(L), now + lease, rid)
  redis.call('PEXPIRE', hk(L), lease * 2)
end
local function enqueue(L, c, tenant, rid, arrival)
  redis.call('RPUSH', qk(L, c, tenant), rid)
  redis.call('ZADD', ok(L, c), arrival, rid)
  if not redis.call('ZSCORE', rk(L, c), tenant) then
    redis.call('ZADD', rk(L, c), redis.call('INCR', P .. 'n:' .. L), tenant)
  end
end
local function unqueue(L, c, tenant, rid)
  redis.call('LREM', qk(L, c, tenant), 0, rid)
  redis.call('ZREM', ok(L, c), rid)
  if redis.call('LLEN', qk(L, c, tenant)) == 0 then redis.call('ZREM', rk(L, c), tenant) end
end

-- The next waiter at L by class (with aging), tenant turn and arrival; nil when none waits.
local function pick(L)
  for _ = 1, 1000 do
    local best, bestRank = nil, nil
    for c = 3, 1, -1 do
      local o = redis.call('ZRANGE', ok(L, c), 0, 0, 'WITHSCORES')
      if o[1] then
        local rank = c + (now - tonumber(o[2])) / aging
        if bestRank == nil or rank > bestRank then best, bestRank = c, rank end
      end
    end
    if best == nil then return nil end
    local tenant = redis.call('ZRANGE', rk(L, best), 0, 0)[1]
    if not tenant then
      -- Arrivals without a turn entry cannot happen; heal rather than spin.
      local o = redis.call('ZRANGE', ok(L, best), 0, 0)
      redis.call('ZREM', ok(L, best), o[1])
    else
      local rid = redis.call('LPOP', qk(L, best, tenant))
      if redis.call('LLEN', qk(L, best, tenant)) == 0 then
        redis.call('ZREM', rk(L, best), tenant)
      else
        redis.call('ZADD', rk(L, best), redis.call('INCR', P .. 'n:' .. L), tenant)
      end
      if rid then
        redis.call('ZREM', ok(L, best), rid)
        return rid
      end
    end
  end
  return nil
end

-- Takes slots from limit i of lims on while they are free with nobody queued; returns the index of the first
-- limit it could not take (0: all taken).
local function advance(rid, lims, i)
  for j = i, #lims do
    local L = lims[j][1]
    if used(L) < capOf(L) and depth(L) == 0 then hold(L, rid) else return j end
  end
  return 0
end

-- Removes a waiter: out of its queue, its slots freed (their limits appended to work).
local function drop(rid, work)
  local w = redis.call('HMGET', wk(rid), 'lims', 'stage', 'cls', 'st')
  if w[1] then
    local lims = cjson.decode(w[1])
    local stage = tonumber(w[2])
    if w[4] == 'q' and lims[stage] then unqueue(lims[stage][1], tonumber(w[3]), lims[stage][2], rid) end
    for k = 1, math.min(stage, #lims + 1) - 1 do
      redis.call('ZREM', hk(lims[k][1]), rid)
      work[#work + 1] = lims[k][1]
    end
  end
  redis.call('DEL', wk(rid))
  redis.call('ZREM', X, rid)
end

-- Hands free slots of every limit in work to the heads of their queues.
local function grant(work)
  local i = 1
  while i <= #work do
    local L = work[i]
    i = i + 1
    for _ = 1, 1000 do
      if used(L) >= capOf(L) then break end
      local rid = pick(L)
      if rid == nil then break end
      local w = redis.call('HMGET', wk(rid), 'lims', 'stage', 'cls', 'arr', 'rep', 'exp')
      if w[1] and tonumber(w[6]) >= now then
        local lims = cjson.decode(w[1])
        hold(L, rid)
        local at = advance(rid, lims, tonumber(w[2]) + 1)
        if at == 0 then
          redis.call('HSET', wk(rid), 'st', 'g', 'stage', #lims + 1)
          redis.call('PEXPIRE', wk(rid), wttl)
          redis.call('ZREM', X, rid)
          redis.call('PUBLISH', P .. 'g:' .. w[5], rid)
        else
          redis.call('HSET', wk(rid), 'stage', at)
          enqueue(lims[at][1], tonumber(w[3]), lims[at][2], rid, tonumber(w[4]))
          work[#work + 1] = lims[at][1]
        end
      else
        -- A waiter whose gateway stopped polling (crashed): out already; free what it held.
        redis.call('HSET', wk(rid), 'st', 'x')
        drop(rid, work)
      end
    end
  end
end

local work = {}
for _, rid in ipairs(redis.call('ZRANGEBYSCORE', X, '-inf', now, 'LIMIT', 0, 100)) do drop(rid, work) end

if op == 'acquire' then
  -- ARGV: rid, replica, class, max queue depth, n, then n × (limit, slots, tenant)
  local rid, rep, cls, maxq, n = ARGV[5], ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
  local lims = {}
  for k = 1, n do
    local L = ARGV[7 + 3 * k]
    redis.call('HSET', P .. 'cap', L, ARGV[8 + 3 * k])
    lims[k] = { L, ARGV[9 + 3 * k] }
  end
  local at = advance(rid, lims, 1)
  if at == 0 then
    grant(work)
    return { 1, 0, 0 }
  end
  local L = lims[at][1]
  local d = depth(L)
  if d >= maxq then
    for k = 1, at - 1 do
      redis.call('ZREM', hk(lims[k][1]), rid)
      work[#work + 1] = lims[k][1]
    end
    grant(work)
    return { -1, at, d }
  end
  redis.call('HSET', wk(rid), 'lims', cjson.encode(lims), 'stage', at, 'cls', cls, 'arr', now, 'rep', rep,
    'exp', now + wttl, 'st', 'q')
  redis.call('PEXPIRE', wk(rid), wttl * 4)
  redis.call('ZADD', X, now + wttl, rid)
  enqueue(L, cls, lims[at][2], rid, now)
  -- A slot may have been freed by an expired lease with waiters queued: the head (maybe this request) takes it.
  work[#work + 1] = L
  grant(work)
  local st = redis.call('HGET', wk(rid), 'st')
  if st == 'g' then
    redis.call('DEL', wk(rid))
    return { 1, 0, 0 }
  end
  return { 0, at, d + 1 }
elseif op == 'release' or op == 'cancel' then
  -- ARGV: rid, n, then n limits. cancel keeps a grant that raced the waiter's timeout (returns 1).
  local rid, n = ARGV[5], tonumber(ARGV[6])
  local st = redis.call('HGET', wk(rid), 'st')
  if op == 'cancel' and st == 'g' then
    redis.call('DEL', wk(rid))
    grant(work)
    return 1
  end
  drop(rid, work)
  for k = 1, n do
    redis.call('ZREM', hk(ARGV[6 + k]), rid)
    work[#work + 1] = ARGV[6 + k]
  end
  grant(work)
  return 0
elseif op == 'tick' then
  -- ARGV: n, then n × "w|h" .. rid .. "\\t" .. limits joined by "\\t". Refreshes leases and waiters, hands out slots
  -- freed by expired leases. Returns per item: 1 granted (waiter) or held (holder), 0 still queued,
  -- -1 gone (a waiter dropped as dead) or lost (a holder whose lease had already expired).
  local n = tonumber(ARGV[5])
  local out = {}
  for k = 1, n do
    local item = ARGV[5 + k]
    local kind = string.sub(item, 1, 1)
    local parts = {}
    for part in string.gmatch(string.sub(item, 2), '[^\\t]+') do parts[#parts + 1] = part end
    local rid = parts[1]
    if kind == 'w' then
      local w = redis.call('HMGET', wk(rid), 'st', 'lims', 'stage')
      if w[1] == 'q' then
        local lims = cjson.decode(w[2])
        local stage = tonumber(w[3])
        redis.call('HSET', wk(rid), 'exp', now + wttl)
        redis.call('PEXPIRE', wk(rid), wttl * 4)
        redis.call('ZADD', X, now + wttl, rid)
        for j = 1, stage - 1 do redis.call('ZADD', hk(lims[j][1]), 'XX', now + lease, rid) end
        work[#work + 1] = lims[stage][1]
        out[k] = 0
      elseif w[1] == 'g' then
        out[k] = 1
      else
        out[k] = -1
      end
    else
      local held = 1
      for j = 2, #parts do
        if redis.call('ZADD', hk(parts[j]), 'XX', 'CH', now + lease, rid) == 0 then
          if not redis.call('ZSCORE', hk(parts[j]), rid) then held = -1 end
        end
        redis.call('PEXPIRE', hk(parts[j]), lease * 2)
      end
      out[k] = held
    end
  end
  grant(work)
  -- Waiters granted by this very tick.
  for k = 1, n do
    local item = ARGV[5 + k]
    if out[k] == 0 and string.sub(item, 1, 1) == 'w' then
      local rid = string.match(string.sub(item, 2), '^[^\\t]+')
      if redis.call('HGET', wk(rid), 'st') == 'g' then out[k] = 1 end
    end
  end
  return out
end
return redis.error_reply('unknown op ' .. tostring(op))
`;

const PREFIX = "tm:cc:{tmcc}:";
/** How often this replica polls for its waiters (grants also arrive at once by pub/sub). */
const POLL_MS = 250;
/** A refusal's retry-after when the wait ran out or the queue was full. */
const RETRY_AFTER_MS = 1_000;

type Cmd = (...args: (string | number)[]) => Promise<unknown>;

interface Waiter {
  limits: string[];
  settle(granted: boolean, err?: unknown): void;
}

/**
 * ConcurrencyLimiter over Redis: exact across any number of gateway replicas (every grant is decided by one atomic
 * script on one Redis slot), leases refreshed while a request runs (so a crashed replica's slots come back
 * `lease_ms` after its last refresh), bounded fair queues (see SCRIPT), grants pushed by Redis pub/sub and polled
 * every 250 ms as a fallback. A request with no limit configured never reaches Redis; one with free slots and no
 * queue costs one round trip.
 */
export class RedisConcurrencyLimiter implements ConcurrencyLimiter {
  readonly replicaId = randomBytes(8).toString("hex");
  private readonly holders = new Map<string, string[]>();
  private readonly waiters = new Map<string, Waiter>();
  /** Grants published before this replica had registered the waiter (the acquire reply came second). */
  private readonly early = new Set<string>();
  private subscriber: Redis | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastRefresh = 0;
  private ticking = false;
  private settings: QueueSettings = { maxWaitMs: 30_000, maxDepth: 256, agingMs: 10_000, leaseMs: 15_000 };

  constructor(
    private readonly redis: Redis,
    private readonly logger: Logger,
  ) {
    redis.defineCommand("tmConcurrency", { numberOfKeys: 1, lua: SCRIPT });
  }

  private get cmd(): Cmd {
    return (this.redis as unknown as { tmConcurrency: Cmd }).tmConcurrency.bind(this.redis);
  }

  private run(op: string, ...args: (string | number)[]): Promise<unknown> {
    const s = this.settings;
    return this.cmd(`${PREFIX}x`, op, s.leaseMs, s.agingMs, s.leaseMs, ...args);
  }

  /** Subscribes to this replica's grants and starts refreshing leases. */
  async start(): Promise<void> {
    const sub = this.redis.duplicate({ lazyConnect: true });
    sub.on("error", (err) => this.logger.warn({ err: err.message }, "redis (concurrency grants) error"));
    sub.on("message", (_channel: string, rid: string) => this.granted(rid));
    await sub.connect();
    await sub.subscribe(`${PREFIX}g:${this.replicaId}`);
    this.subscriber = sub;
    this.timer = setInterval(() => this.tick(), POLL_MS);
    this.timer.unref();
  }

  /** Stops refreshing (held leases then expire) and closes the grant subscription. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.subscriber?.quit().catch(() => undefined);
  }

  async acquire(req: ConcurrencyRequest): Promise<ConcurrencyLease> {
    if (req.limits.length === 0) return NO_LEASE;
    this.settings = req.queue;
    const labels = { model: req.model, class: req.priority };
    const began = performance.now();
    const limits = req.limits.map((l) => l.id);
    const args: (string | number)[] = [
      req.requestId,
      this.replicaId,
      priorityRank(req.priority),
      req.queue.maxDepth,
      req.limits.length,
    ];
    for (const l of req.limits) args.push(l.id, l.cap, l.tenant);
    if (req.signal?.aborted) throw abortedError(req.signal);
    const [state, at] = (await this.run("acquire", ...args)) as [number, number, number];
    if (state === 1) return this.lease(req.requestId, limits);
    if (state === -1 || req.maxWaitMs <= 0) {
      if (state === 0) await this.run("cancel", req.requestId, limits.length, ...limits);
      metrics.queueWait.observe({ ...labels, outcome: "refused" }, 0);
      metrics.concurrencyRefused.inc({ limit: kindOf(limits[at - 1]) });
      throw refusal(limits[at - 1], state === -1 ? "queue is full" : "no slot is free");
    }
    metrics.queueDepth.inc(labels);
    let outcome = "granted";
    try {
      await new Promise<void>((resolve, reject) => {
        let done = false;
        const finish = (granted: boolean, err?: unknown) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          req.signal?.removeEventListener("abort", onAbort);
          this.waiters.delete(req.requestId);
          if (granted) resolve();
          else reject(err);
        };
        // Leaving the queue goes through Redis: a grant that raced the timeout is kept (timeout) or given back.
        const leave = (why: "timeout" | "abort") => {
          if (done || !this.waiters.has(req.requestId)) return;
          this.waiters.delete(req.requestId);
          this.run("cancel", req.requestId, limits.length, ...limits).then(
            (kept) => {
              if (why === "timeout" && kept === 1) return finish(true);
              if (kept === 1) this.release(req.requestId, limits);
              outcome = why === "timeout" ? "timeout" : "cancelled";
              finish(
                false,
                why === "timeout"
                  ? refusal(limits[at - 1], `waited ${req.maxWaitMs} ms`)
                  : abortedError(req.signal as AbortSignal),
              );
            },
            (err: unknown) => {
              outcome = "error";
              finish(false, err);
            },
          );
        };
        const onAbort = () => leave("abort");
        const timer = setTimeout(() => leave("timeout"), req.maxWaitMs);
        req.signal?.addEventListener("abort", onAbort, { once: true });
        this.waiters.set(req.requestId, {
          limits,
          settle: (granted, err) => {
            if (!granted) outcome = "lost";
            finish(granted, err);
          },
        });
        if (this.early.delete(req.requestId)) this.granted(req.requestId);
        // An abort between the enqueue and the listener above fired no event: the client left while the script ran.
        if (req.signal?.aborted) onAbort();
      });
    } finally {
      metrics.queueDepth.dec(labels);
      metrics.queueWait.observe({ ...labels, outcome }, (performance.now() - began) / 1000);
      if (outcome === "timeout") metrics.concurrencyRefused.inc({ limit: kindOf(limits[at - 1]) });
    }
    return this.lease(req.requestId, limits);
  }

  private lease(requestId: string, limits: string[]): ConcurrencyLease {
    this.holders.set(requestId, limits);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.release(requestId, limits);
      },
    };
  }

  private release(requestId: string, limits: string[]): void {
    this.holders.delete(requestId);
    this.run("release", requestId, limits.length, ...limits).catch((err: Error) =>
      // The slots come back when their lease expires.
      this.logger.warn({ err: err.message, request_id: requestId }, "concurrency release failed"),
    );
  }

  private granted(requestId: string): void {
    const w = this.waiters.get(requestId);
    if (w !== undefined) {
      w.settle(true);
      return;
    }
    if (this.early.size > 10_000) this.early.clear();
    this.early.add(requestId);
  }

  /** Polls for waiters (every 250 ms while any wait) and refreshes leases (every third of the lease). */
  private tick(): void {
    const now = performance.now();
    const refresh = now - this.lastRefresh >= this.settings.leaseMs / 3;
    if (this.ticking || (this.waiters.size === 0 && !(refresh && this.holders.size > 0))) return;
    const items: string[] = [];
    const order: { rid: string; waiter: boolean }[] = [];
    for (const [rid, w] of this.waiters) {
      items.push(`w${rid}\t${w.limits.join("\t")}`);
      order.push({ rid, waiter: true });
    }
    if (refresh) {
      this.lastRefresh = now;
      for (const [rid, limits] of this.holders) {
        items.push(`h${rid}\t${limits.join("\t")}`);
        order.push({ rid, waiter: false });
      }
    }
    if (items.length === 0) return;
    this.ticking = true;
    this.run("tick", items.length, ...items)
      .then((res) => {
        const states = res as number[];
        let lost = 0;
        order.forEach(({ rid, waiter }, i) => {
          if (waiter) {
            if (states[i] === 1) this.granted(rid);
            else if (states[i] === -1) {
              this.waiters
                .get(rid)
                ?.settle(false, refusal(undefined, "the wait was dropped (this gateway stalled past its lease)"));
            }
          } else if (states[i] === -1) lost++;
        });
        if (lost > 0) this.logger.warn({ lost }, "concurrency leases had expired before they were refreshed");
      })
      .catch((err: Error) => this.logger.warn({ err: err.message }, "concurrency tick failed"))
      .finally(() => {
        this.ticking = false;
      });
  }
}

const NO_LEASE: ConcurrencyLease = { release: () => undefined };

function kindOf(limit: string | undefined): string {
  return limit?.slice(0, limit.indexOf(":")) ?? "unknown";
}

function refusal(limit: string | undefined, why: string): ResourceExhaustedError {
  const kind = kindOf(limit);
  const what = kind === "model" ? "this model" : kind === "team" ? "this team" : "this key";
  return new ResourceExhaustedError(`Concurrency limit of ${what} reached: ${why}`, {
    retryAfterMs: RETRY_AFTER_MS,
    reason: "concurrency_limit",
  });
}
