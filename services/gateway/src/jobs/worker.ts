import { randomBytes } from "node:crypto";
import {
  consumeEvents,
  type Delivery,
  type EventConsumer,
  type JetStreamClient,
  type JetStreamManager,
  JobCallbackEvent,
  JobSubmittedEvent,
  jobUpdatedSubject,
  type NatsConnection,
  publishEvent,
  Subjects,
} from "@tokenmesh/events";
import { type ChatRequest, ChatResponse, type EmbedRequest, EmbedResponse } from "@tokenmesh/proto/common/v1/chat";
import type { JobSubmitted } from "@tokenmesh/proto/events/v1/events";
import { AppError, toAppError } from "@tokenmesh/runtime";
import type { Logger } from "@tokenmesh/telemetry";
import type { ChatFlow } from "../domain/chat-flow.js";
import { BATCH_PRIORITY, isFinal, jobRequestId } from "../domain/job-state.js";
import { type Principal, principalOf } from "../domain/keys.js";
import type { KeyStore } from "../domain/ports.js";
import type { JobRecord, RedisJobStore, StoredItem } from "./store.js";
import { jobErrorOf } from "./view.js";

export interface JobWorkerOptions {
  store: RedisJobStore;
  flow: ChatFlow;
  keys: KeyStore;
  logger: Logger;
  /** Jobs run at once by this replica. */
  concurrency: number;
  /** The lease and JetStream ack wait; renewed every third of it while a job runs. */
  leaseMs: number;
  /** Runs of a job failing retryably before it is failed. */
  maxAttempts: number;
  /** Requests of one batch in flight at once. */
  batchConcurrency: number;
}

/** The durable consumer every gateway replica's workers share. */
export const JOBS_CONSUMER = "gateway-jobs";

/**
 * Runs async jobs from the LLM_JOBS work queue, in this gateway (one hop: a job's requests go to the router like
 * any other), through ChatFlow as the key that submitted them, at batch priority.
 *
 * Nothing lost, nothing run twice:
 * - the message is acknowledged only after the job's outcome is stored (and its callback queued); a worker killed
 *   before that leaves it to be redelivered after the ack wait;
 * - a run holds a lease in the job store (renewed, with JetStream's in-progress ack, every third of the lease); a
 *   redelivery finds a final job and is acknowledged without running, or a live lease and waits;
 * - a run taken over after a crash uses the same request id as the dead one, so its usage and the dead run's (the
 *   router reports what a provider served even when the gateway dies) are one ledger entry: billed once. The model
 *   may have answered twice; the tenant pays once.
 * - a retryable failure (model unavailable, a limit full) is stored as a retry and the message redelivered with
 *   backoff, up to `maxAttempts` runs, each under its own request id (each billed for what it consumed).
 */
export class JobWorker {
  private consumer: EventConsumer | undefined;
  private readonly running = new Map<string, AbortController>();
  private readonly instance = randomBytes(6).toString("hex");
  private unsubscribe: (() => void) | undefined;
  private js: JetStreamClient | undefined;
  private nc: NatsConnection | undefined;
  private stopping = false;

  constructor(private readonly o: JobWorkerOptions) {}

  /** The deliveries a job may have before the consumer gives up on it; every delivery past the last attempt fails it. */
  get maxDeliveries(): number {
    return this.o.maxAttempts * 4 + 4;
  }

  async start(nc: NatsConnection, js: JetStreamClient, jsm: JetStreamManager): Promise<void> {
    this.nc = nc;
    this.js = js;
    // A cancelled job's worker hears it at once (the lease renewal would notice it too, later).
    const sub = nc.subscribe(`${Subjects.jobUpdatedPrefix}.*`);
    void (async () => {
      for await (const m of sub) {
        if (m.string() !== "cancelled") continue;
        const id = m.subject.slice(Subjects.jobUpdatedPrefix.length + 1);
        this.running.get(id)?.abort(new AppError("CANCELLED", "The job was cancelled"));
      }
    })().catch(() => undefined);
    this.unsubscribe = () => sub.unsubscribe();
    this.consumer = await consumeEvents({
      js,
      jsm,
      logger: this.o.logger,
      type: JobSubmittedEvent,
      durable: JOBS_CONSUMER,
      concurrency: this.o.concurrency,
      prefetch: this.o.concurrency,
      ackWaitMs: this.o.leaseMs,
      maxDeliver: this.maxDeliveries,
      handler: (event, delivery) => this.handle(event, delivery),
    });
  }

  /**
   * Stops taking jobs and aborts the running ones, giving them back (same attempt, so a re-run is billed once) for
   * another replica to run at once.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    this.unsubscribe?.();
    for (const ac of this.running.values()) ac.abort(new AppError("UNAVAILABLE", "The gateway is shutting down"));
    await this.consumer?.stop();
  }

  private async handle(event: JobSubmitted, delivery: Delivery): Promise<void> {
    const id = event.jobId;
    const store = this.o.store;
    if (!(await store.get(id))) {
      // The record is gone (expired before the job ran, or lost): the message holds the whole job.
      await store.create(recordFromMessage(event));
    }
    const owner = `${this.instance}:${delivery.streamSequence}:${delivery.deliveryCount}`;
    const claim = await store.apply(id, { type: "claim", owner, now: Date.now(), leaseMs: this.o.leaseMs });
    const t = claim.transition;
    if (t.kind === "final") {
      await this.finished(claim.record!);
      return;
    }
    if (t.kind === "busy") {
      throw new AppError("UNAVAILABLE", `job ${id} is running elsewhere`, { retryAfterMs: t.retryInMs + 100 });
    }
    if (t.kind !== "apply") return;
    const record = claim.record!;
    if (delivery.deliveryCount >= this.maxDeliveries) {
      // Delivered again and again without an outcome (its runs keep dying): fail it rather than lose it.
      const err = new AppError("INTERNAL", `The job was abandoned after ${delivery.deliveryCount} deliveries`);
      const done = await store.apply(
        id,
        { type: "finish", owner, now: Date.now(), outcome: "failed" },
        this.failure(record, err),
      );
      return this.settled(id, done.record);
    }
    this.hint(id, "running");
    const ac = new AbortController();
    this.running.set(id, ac);
    const beat = setInterval(
      () => {
        delivery.working();
        store.apply(id, { type: "heartbeat", owner, now: Date.now(), leaseMs: this.o.leaseMs }).then(
          (r) => {
            if (r.transition.kind === "lost") {
              ac.abort(
                new AppError("CANCELLED", r.transition.status === "cancelled" ? "The job was cancelled" : "lost"),
              );
            }
          },
          (err: unknown) => this.o.logger.warn({ err, job_id: id }, "job lease renewal failed"),
        );
      },
      Math.max(200, Math.floor(this.o.leaseMs / 3)),
    );
    let outcome: { ok: true; result: StoredItem | StoredItem[] } | { ok: false; err: unknown };
    try {
      outcome = { ok: true, result: await this.run(event, record, ac.signal) };
    } catch (err) {
      outcome = { ok: false, err };
    } finally {
      clearInterval(beat);
      this.running.delete(id);
    }

    const now = Date.now();
    if (ac.signal.aborted) {
      // Cancelled (final in the store: acknowledged), or this replica is stopping (the job is given back, same
      // attempt, for another replica at once), or the run was taken over: none of this run's outcome is written.
      if (this.stopping) {
        await store.apply(id, { type: "release", owner, now }).catch(() => undefined);
        throw new AppError("UNAVAILABLE", `job ${id} released: the gateway is stopping`, { retryAfterMs: 100 });
      }
      return this.settled(id);
    }
    if (outcome.ok) {
      const done = await store.apply(
        id,
        { type: "finish", owner, now, outcome: "succeeded" },
        { result: JSON.stringify(outcome.result), ...(record.callbackUrl ? { callback_status: "pending" } : {}) },
        record.batch ? Array.from({ length: record.count }, (_, i) => `item:${i}`) : [],
      );
      return this.settled(id, done.record);
    }
    const err = toAppError(outcome.err);
    const lastTry = record.attempt >= this.o.maxAttempts || delivery.deliveryCount >= this.maxDeliveries - 1;
    if (retryable(err) && !lastTry) {
      const r = await store.apply(id, { type: "retry", owner, now }, { error: JSON.stringify(jobErrorOf(err)) });
      if (r.transition.kind === "apply") this.hint(id, "queued");
      else return this.settled(id, r.record);
      throw new AppError("UNAVAILABLE", `job ${id} attempt ${record.attempt} failed: ${err.message}`, {
        retryAfterMs: err.retryAfterMs ?? Math.min(60_000, 1_000 * 2 ** (record.attempt - 1)),
      });
    }
    const done = await store.apply(id, { type: "finish", owner, now, outcome: "failed" }, this.failure(record, err));
    return this.settled(id, done.record);
  }

  private failure(record: JobRecord, err: unknown): Record<string, string> {
    return { error: JSON.stringify(jobErrorOf(err)), ...(record.callbackUrl ? { callback_status: "pending" } : {}) };
  }

  /**
   * After a run: a final job is announced and called back, and its message acknowledged (by returning); a job
   * still open (taken over, or this replica stopping) is left to its lease: the message is redelivered later.
   */
  private async settled(id: string, known?: JobRecord): Promise<void> {
    const record = known ?? (await this.o.store.get(id));
    if (!record || isFinal(record.status)) {
      if (record) await this.finished(record);
      return;
    }
    throw new AppError("UNAVAILABLE", `job ${id} is held by another run`, { retryAfterMs: this.o.leaseMs });
  }

  /** Runs the job's request(s) through ChatFlow; a batch's answers are stored one by one as they come. */
  private async run(event: JobSubmitted, record: JobRecord, signal: AbortSignal): Promise<StoredItem | StoredItem[]> {
    const principal = await this.principalOf(event);
    const priority = event.priority || BATCH_PRIORITY;
    const one = async (req: { chat?: ChatRequest; embed?: EmbedRequest }, index?: number): Promise<StoredItem> => {
      const requestId = jobRequestId(record.id, record.attempt, index);
      if (req.embed) {
        const { response } = await this.o.flow.embed({
          authorization: undefined,
          principal,
          priority,
          requestId,
          request: req.embed,
          signal,
        });
        return { embed: EmbedResponse.toJSON(response) };
      }
      const { response } = await this.o.flow.complete({
        authorization: undefined,
        principal,
        priority,
        requestId,
        request: { ...req.chat!, stream: false },
        signal,
        endpoint: "chat",
      });
      return { chat: ChatResponse.toJSON(response) };
    };
    if (!event.batch) {
      return one(event.endpoint === "embeddings" ? { embed: event.embedRequest! } : { chat: event.request! });
    }
    const requests =
      event.endpoint === "embeddings"
        ? event.embedBatch.map((embed) => ({ embed }))
        : event.chatBatch.map((chat) => ({ chat }));
    const results: (StoredItem | undefined)[] = new Array(requests.length);
    for (const [i, item] of await this.o.store.items(record.id)) results[i] = item;
    let next = 0;
    const lane = async () => {
      while (next < requests.length) {
        const i = next++;
        if (results[i] !== undefined) continue;
        if (signal.aborted) throw signal.reason;
        let item: StoredItem;
        try {
          item = await one(requests[i]!, i);
        } catch (err) {
          if (signal.aborted) throw signal.reason;
          // One request's failure is its answer; the batch goes on.
          item = { error: jobErrorOf(err) };
        }
        results[i] = item;
        await this.o.store.saveItem(record.id, i, item);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.o.batchConcurrency, requests.length) }, lane));
    return results as StoredItem[];
  }

  /**
   * Who the job runs as: a virtual key is read again (revoked: the job fails), a JWT or admin caller is the
   * snapshot taken at submission. Rate limits were applied when the job was submitted, so the run is not limited
   * again (budgets and holds apply as to any request).
   */
  private async principalOf(event: JobSubmitted): Promise<Principal> {
    const snap = event.principal;
    const record = await this.o.keys.get(event.keyId);
    let p: Principal;
    if (record) p = principalOf(record);
    else if (event.keyId.startsWith("key_") || !snap) {
      throw new AppError("UNAUTHENTICATED", "The key that submitted this job no longer exists", {
        reason: "invalid_api_key",
      });
    } else {
      p = {
        keyId: event.keyId,
        name: snap.name,
        team: snap.team,
        user: snap.user,
        models: snap.models,
        rpm: 0,
        tpm: 0,
        admin: snap.admin,
      };
    }
    return { ...p, rpm: 0, tpm: 0 };
  }

  /** A final job: its watchers are told, and its callback (if any) is queued before the message is acknowledged. */
  private async finished(record: JobRecord): Promise<void> {
    this.hint(record.id, record.status);
    if (!record.callbackUrl || !this.js) return;
    // Idempotent: a redelivery publishes it again under the same id, which JetStream drops as a duplicate.
    await publishEvent(
      this.js,
      JobCallbackEvent,
      {
        jobId: record.id,
        keyId: record.keyId,
        callbackUrl: record.callbackUrl,
        finishedAt: new Date(record.finishedAt ?? Date.now()).toISOString(),
      },
      { msgId: `${record.id}:callback` },
    );
  }

  private hint(id: string, status: string): void {
    try {
      this.nc?.publish(jobUpdatedSubject(id), status);
    } catch {
      // Best effort: watchers poll too.
    }
  }
}

/** Whether a failed run is worth another attempt: what the router would retry, and a full limit that will free up. */
function retryable(err: AppError): boolean {
  if (err.retryable) return true;
  return err.code === "RESOURCE_EXHAUSTED" && err.reason !== "insufficient_quota" && err.retryAfterMs !== undefined;
}

function recordFromMessage(event: JobSubmitted): JobRecord {
  const embeddings = event.endpoint === "embeddings";
  return {
    id: event.jobId,
    keyId: event.keyId,
    endpoint: embeddings ? "embeddings" : "chat",
    batch: event.batch,
    count: event.batch ? (embeddings ? event.embedBatch.length : event.chatBatch.length) : 1,
    encodingFormat: event.encodingFormat === "base64" ? "base64" : "float",
    createdAt: event.submittedAt ? Date.parse(event.submittedAt) : Date.now(),
    metadata: event.metadata,
    callbackUrl: event.callbackUrl,
    callbackStatus: "",
    status: "queued",
    attempt: 1,
    owner: "",
    leaseUntil: 0,
    startedAt: undefined,
    finishedAt: undefined,
    result: undefined,
    error: undefined,
  };
}
