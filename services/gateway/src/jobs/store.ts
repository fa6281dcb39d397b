import { randomBytes } from "node:crypto";
import { AppError } from "@tokenmesh/runtime";
import type { Redis } from "ioredis";
import { JOB_STATUSES, type JobEvent, type JobState, type JobStatus, transition } from "../domain/job-state.js";

/** Why a job (or one request of a batch) failed: an AppError's public fields. */
export interface JobError {
  code: string;
  message: string;
  reason?: string | undefined;
  param?: string | undefined;
}

/** One answer as stored: the proto3 JSON of the mesh response, or the error. */
export interface StoredItem {
  chat?: unknown;
  embed?: unknown;
  error?: JobError;
}

/** A job as the store keeps it. */
export interface JobRecord extends JobState {
  id: string;
  /** The key (principal) that submitted it: the only one that may read or cancel it. */
  keyId: string;
  endpoint: "chat" | "embeddings";
  batch: boolean;
  /** Requests in the job (1 unless a batch). */
  count: number;
  encodingFormat: "float" | "base64";
  createdAt: number;
  metadata: Record<string, string>;
  callbackUrl: string;
  /** "pending", "delivered" or "failed" once a callback is due; "" without a callback URL. */
  callbackStatus: string;
  /** A single job's answer, or the batch's answers in order, once succeeded. */
  result: StoredItem | StoredItem[] | undefined;
  error: JobError | undefined;
}

export type NewJob = Omit<
  JobRecord,
  "status" | "attempt" | "owner" | "leaseUntil" | "startedAt" | "finishedAt" | "result" | "error" | "callbackStatus"
>;

// Sets the fields (pairs in ARGV after the first four) only if the record's version is still ARGV[1] ("" for a
// record that must not exist yet), deletes the fields named in ARGV[3] (space-separated), bumps the version and
// sets the TTL ARGV[2] (s). ARGV[4]: 1 to create. Returns 1 when applied.
const CAS = `
local v = redis.call('HGET', KEYS[1], 'v')
if ARGV[4] == '1' then
  if v then return 0 end
elseif v ~= ARGV[1] then
  return 0
end
for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if ARGV[3] ~= '' then
  for f in string.gmatch(ARGV[3], '%S+') do redis.call('HDEL', KEYS[1], f) end
end
redis.call('HINCRBY', KEYS[1], 'v', 1)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
`;

const jobKey = (id: string) => `tm:job:{${id}}`;
const ownerKey = (keyId: string) => `tm:jobs:owner:{${keyId}}`;
const secretKey = (keyId: string) => `tm:jobs:secret:{${keyId}}`;

/** What applying an event did: the transition, and the record as it stands afterwards (undefined when missing). */
export interface Applied {
  transition: ReturnType<typeof transition>;
  record: JobRecord | undefined;
}

/**
 * Jobs in Redis: one hash per job (`tm:job:{id}`), kept `retentionS` after its last change; a per-key index of
 * job ids by creation time for listing; per-key callback secrets. State changes go through the pure state machine
 * (domain/job-state.ts) and are written with a compare-and-set on the record's version, so concurrent workers and
 * API calls on any replica apply one history. Each script touches one key (Redis Cluster safe).
 */
export class RedisJobStore {
  constructor(
    private readonly redis: Redis,
    private readonly retentionS: number,
  ) {
    redis.defineCommand("tmJobCas", { numberOfKeys: 1, lua: CAS });
  }

  private cas(id: string, version: string, fields: Record<string, string>, del: string[], create = false) {
    const args = Object.entries(fields).flat();
    return (this.redis as unknown as { tmJobCas(...a: (string | number)[]): Promise<number> }).tmJobCas(
      jobKey(id),
      version,
      this.retentionS,
      del.join(" "),
      create ? "1" : "0",
      ...args,
    );
  }

  /** Stores a new queued job and indexes it under its key; false if a record with that id exists. */
  async create(job: NewJob): Promise<boolean> {
    const fields: Record<string, string> = {
      id: job.id,
      key_id: job.keyId,
      endpoint: job.endpoint,
      batch: job.batch ? "1" : "0",
      count: String(job.count),
      encoding: job.encodingFormat,
      created_at: String(job.createdAt),
      metadata: JSON.stringify(job.metadata),
      callback_url: job.callbackUrl,
      status: "queued",
      attempt: "1",
    };
    const created = (await this.cas(job.id, "", fields, [], true)) === 1;
    if (created) {
      const idx = ownerKey(job.keyId);
      await this.redis
        .multi()
        .zadd(idx, job.createdAt, job.id)
        .zremrangebyscore(idx, "-inf", job.createdAt - this.retentionS * 1000)
        .expire(idx, this.retentionS)
        .exec();
    }
    return created;
  }

  async get(id: string): Promise<JobRecord | undefined> {
    return recordOf(await this.redis.hgetall(jobKey(id)));
  }

  /**
   * Applies a state-machine event atomically. `extra` fields are written with an applied transition (result,
   * error, callback status) and `del` fields removed. Retries on a concurrent change; never applies an event to a stale state.
   */
  async apply(id: string, event: JobEvent, extra: Record<string, string> = {}, del: string[] = []): Promise<Applied> {
    for (let i = 0; i < 20; i++) {
      const raw = await this.redis.hgetall(jobKey(id));
      const record = recordOf(raw);
      if (!record) return { transition: { kind: "lost", status: "failed" }, record: undefined };
      const t = transition(record, event);
      if (t.kind !== "apply") return { transition: t, record };
      const n = t.next;
      const fields: Record<string, string> = {
        ...extra,
        status: n.status,
        attempt: String(n.attempt),
        owner: n.owner,
        lease_until: String(n.leaseUntil),
      };
      if (n.startedAt !== undefined) fields.started_at = String(n.startedAt);
      if (n.finishedAt !== undefined) fields.finished_at = String(n.finishedAt);
      if ((await this.cas(id, raw.v ?? "", fields, del)) === 1) {
        return { transition: t, record: { ...record, ...n, ...recordExtras(extra, record) } };
      }
    }
    throw new AppError("UNAVAILABLE", `job ${id}: too many concurrent changes`);
  }

  /** Stores one answer of a batch job as soon as it is known (a run taken over later skips it). */
  async saveItem(id: string, index: number, item: StoredItem): Promise<void> {
    await this.redis.hset(jobKey(id), `item:${index}`, JSON.stringify(item));
  }

  /** The batch answers stored so far, by index. */
  async items(id: string): Promise<Map<number, StoredItem>> {
    const raw = await this.redis.hgetall(jobKey(id));
    const out = new Map<number, StoredItem>();
    for (const [k, v] of Object.entries(raw)) {
      if (k.startsWith("item:")) out.set(Number(k.slice(5)), JSON.parse(v) as StoredItem);
    }
    return out;
  }

  /** Sets the callback's delivery status (no state change). */
  async setCallbackStatus(id: string, status: string): Promise<void> {
    await this.redis.hset(jobKey(id), "callback_status", status);
  }

  /**
   * A key's jobs, newest first: at most `limit`, after the job `after` (a cursor from a previous page). Jobs past
   * their retention are skipped.
   */
  async list(keyId: string, limit: number, after?: string): Promise<{ jobs: JobRecord[]; hasMore: boolean }> {
    const idx = ownerKey(keyId);
    let start = 0;
    if (after) {
      const rank = await this.redis.zrevrank(idx, after);
      if (rank === null) return { jobs: [], hasMore: false };
      start = rank + 1;
    }
    const ids = await this.redis.zrevrange(idx, start, start + limit);
    const page = ids.slice(0, limit);
    const pipe = this.redis.pipeline();
    for (const id of page) pipe.hgetall(jobKey(id));
    const rows = (await pipe.exec()) ?? [];
    const jobs: JobRecord[] = [];
    for (const [err, raw] of rows) {
      const r = err ? undefined : recordOf(raw as Record<string, string>);
      if (r && r.keyId === keyId) jobs.push(r);
    }
    return { jobs, hasMore: ids.length > limit };
  }

  /** The key's callback signing secret, created on first use; `rotate` replaces it. */
  async callbackSecret(keyId: string, rotate = false): Promise<string> {
    const fresh = `whsec_${randomBytes(32).toString("base64url")}`;
    if (rotate) {
      await this.redis.set(secretKey(keyId), fresh);
      return fresh;
    }
    await this.redis.set(secretKey(keyId), fresh, "NX");
    return (await this.redis.get(secretKey(keyId))) ?? fresh;
  }
}

function recordExtras(extra: Record<string, string>, record: JobRecord): Partial<JobRecord> {
  const out: Partial<JobRecord> = {};
  if (extra.result !== undefined) out.result = JSON.parse(extra.result) as JobRecord["result"];
  if (extra.error !== undefined) out.error = JSON.parse(extra.error) as JobError;
  if (extra.callback_status !== undefined) out.callbackStatus = extra.callback_status;
  return { ...out, keyId: record.keyId };
}

function num(v: string | undefined): number | undefined {
  if (v === undefined || v === "") return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : undefined;
}

function recordOf(raw: Record<string, string>): JobRecord | undefined {
  if (!raw.id || !raw.status) return undefined;
  const status = (JOB_STATUSES as readonly string[]).includes(raw.status) ? (raw.status as JobStatus) : "failed";
  return {
    id: raw.id,
    keyId: raw.key_id ?? "",
    endpoint: raw.endpoint === "embeddings" ? "embeddings" : "chat",
    batch: raw.batch === "1",
    count: num(raw.count) ?? 1,
    encodingFormat: raw.encoding === "base64" ? "base64" : "float",
    createdAt: num(raw.created_at) ?? 0,
    metadata: raw.metadata ? (JSON.parse(raw.metadata) as Record<string, string>) : {},
    callbackUrl: raw.callback_url ?? "",
    callbackStatus: raw.callback_status ?? "",
    status,
    attempt: num(raw.attempt) ?? 1,
    owner: raw.owner ?? "",
    leaseUntil: num(raw.lease_until) ?? 0,
    startedAt: num(raw.started_at),
    finishedAt: num(raw.finished_at),
    result: raw.result ? (JSON.parse(raw.result) as JobRecord["result"]) : undefined,
    error: raw.error ? (JSON.parse(raw.error) as JobError) : undefined,
  };
}
