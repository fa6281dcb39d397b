import { reachableModels } from "@tokenmesh/catalog";
import {
  encodeEvent,
  type JetStreamClient,
  JobSubmittedEvent,
  jobUpdatedSubject,
  type NatsConnection,
  publishEvent,
} from "@tokenmesh/events";
import type { ChatRequest, EmbedRequest } from "@tokenmesh/proto/common/v1/chat";
import type { JobSubmitted } from "@tokenmesh/proto/events/v1/events";
import { AppError } from "@tokenmesh/runtime";
import type { Logger } from "@tokenmesh/telemetry";
import { estimateMessageTokens, estimateTextTokens, promptTokenBound } from "@tokenmesh/tokens";
import { Admission, type AdmissionRequest } from "../domain/admission.js";
import { resolveModel } from "../domain/authenticate.js";
import { callbackUrlProblem } from "../domain/job-callback.js";
import { BATCH_PRIORITY, isFinal, isJobId, jobRequestId, newJobId } from "../domain/job-state.js";
import type { Principal } from "../domain/keys.js";
import type { Budgets, CatalogView, Cost, RateLimiter } from "../domain/ports.js";
import type { JobRecord, RedisJobStore } from "./store.js";
import { jobErrorOf } from "./view.js";

/** What a client asks to run. */
export interface JobSubmission {
  endpoint: "chat" | "embeddings";
  /** A batch job (`POST /v1/jobs/batch`): the result lists every answer in order. */
  batch: boolean;
  /** The requests (one unless a batch), of the endpoint's kind. */
  chat: ChatRequest[];
  embed: EmbedRequest[];
  encodingFormat: "float" | "base64";
  callbackUrl: string;
  metadata: Record<string, string>;
}

export interface JobServiceDeps {
  catalog: CatalogView;
  /** The sync path's authentication (ChatFlow.authenticate: admin key, virtual keys, JWTs). */
  authenticate: (authorization: string | undefined) => Promise<Principal>;
  limiter: RateLimiter;
  budgets: Budgets;
  cost: Cost;
  store: RedisJobStore;
  logger: Logger;
  /** The JetStream client and connection, once connected. */
  js: () => JetStreamClient | undefined;
  nc: () => NatsConnection | undefined;
  callbackAllow: string[];
  batchMax: number;
}

/** Where nothing else bounds the output, the budget check assumes this many tokens (as ChatFlow does). */
const DEFAULT_MAX_OUTPUT = 4096;
const METADATA_MAX_PAIRS = 16;
/** How often a watcher re-reads a job without a change hint (hints are best effort). */
const WATCH_POLL_MS = 2_000;

const notFound = (id: string) =>
  new AppError("NOT_FOUND", `No job with id '${id}' was found`, { reason: "job_not_found", param: "id" });

/**
 * The async jobs API shared by HTTP and gRPC. Submission authenticates the caller, checks the models, the key's
 * rate limits (the job counts as one request holding all its tokens) and budgets with the sync path's
 * authentication (ChatFlow's Authenticator) and Admission, stores the job (queued) and publishes it to the LLM_JOBS work queue; it answers only once
 * JetStream has acknowledged it. Reads and cancellation see only the caller's own jobs (another key's are NOT_FOUND).
 */
export class JobService {
  private readonly admission: Admission;
  private readonly auth: { authenticate: (authorization: string | undefined) => Promise<Principal> };

  constructor(private readonly deps: JobServiceDeps) {
    this.auth = { authenticate: deps.authenticate };
    this.admission = new Admission(deps);
  }

  async submit(authorization: string | undefined, sub: JobSubmission): Promise<JobRecord> {
    const principal = await this.auth.authenticate(authorization);
    const requests = sub.endpoint === "chat" ? sub.chat : sub.embed;
    if (requests.length === 0) throw new AppError("INVALID_ARGUMENT", "A job needs a request", { param: "request" });
    if (requests.length > this.deps.batchMax) {
      throw new AppError("INVALID_ARGUMENT", `A batch holds at most ${this.deps.batchMax} requests`, {
        param: "requests",
      });
    }
    if (sub.callbackUrl) {
      const problem = callbackUrlProblem(sub.callbackUrl, this.deps.callbackAllow);
      if (problem) {
        throw new AppError("INVALID_ARGUMENT", `The callback_url ${problem}`, {
          param: "callback_url",
          reason: "invalid_callback_url",
        });
      }
    }
    checkMetadata(sub.metadata);
    const id = newJobId();
    await this.admit(principal, id, sub);

    const message: JobSubmitted = {
      jobId: id,
      request: sub.endpoint === "chat" && !sub.batch ? sub.chat[0] : undefined,
      embedRequest: sub.endpoint === "embeddings" && !sub.batch ? sub.embed[0] : undefined,
      chatBatch: sub.endpoint === "chat" && sub.batch ? sub.chat : [],
      embedBatch: sub.endpoint === "embeddings" && sub.batch ? sub.embed : [],
      batch: sub.batch,
      endpoint: sub.endpoint,
      encodingFormat: sub.encodingFormat,
      callbackUrl: sub.callbackUrl,
      keyId: principal.keyId,
      submittedAt: new Date().toISOString(),
      metadata: sub.metadata,
      principal: {
        name: principal.name,
        team: principal.team,
        user: principal.user,
        models: principal.models,
        rpm: principal.rpm,
        tpm: principal.tpm,
        admin: principal.admin,
      },
      priority: BATCH_PRIORITY,
    };
    const data = encodeEvent(JobSubmittedEvent, message);
    const nc = this.deps.nc();
    const js = this.deps.js();
    if (!nc || !js) throw new AppError("UNAVAILABLE", "The job queue is not connected yet");
    const maxPayload = nc.info?.max_payload ?? 1024 * 1024;
    if (data.length > maxPayload - 4096) {
      throw new AppError("INVALID_ARGUMENT", `The job is too large to queue (at most ${maxPayload} bytes)`, {
        reason: "request_too_large",
      });
    }

    const record: JobRecord = {
      id,
      keyId: principal.keyId,
      endpoint: sub.endpoint,
      batch: sub.batch,
      count: requests.length,
      encodingFormat: sub.encodingFormat,
      createdAt: Date.now(),
      metadata: sub.metadata,
      callbackUrl: sub.callbackUrl,
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
    // The record first: a worker may take the message the moment JetStream stores it.
    await this.deps.store.create(record);
    try {
      await publishEvent(js, JobSubmittedEvent, message, { msgId: id });
    } catch (err) {
      // The message may still have been stored (a lost ack): fail the record, so a worker that gets it skips it,
      // and tell the client the job was not queued (it submits again, under a new id).
      const failure = new AppError("UNAVAILABLE", "The job could not be queued; submit it again", { cause: err });
      await this.deps.store
        .apply(
          id,
          { type: "cancel", now: Date.now() },
          { error: JSON.stringify(jobErrorOf(failure)), callback_url: "" },
        )
        .catch(() => undefined);
      this.deps.logger.warn({ err, job_id: id }, "job publish failed");
      throw failure;
    }
    return record;
  }

  /**
   * The rules of a sync request, checked at submission: soft budgets, the key's rate limits and the hard-budget
   * hold. The hold is released at once (the run reserves its own); the rate-limit slot is kept: the job's run is
   * not limited again.
   */
  private async admit(principal: Principal, id: string, sub: JobSubmission): Promise<void> {
    const catalog = this.deps.catalog();
    const parts: AdmissionRequest[] = [];
    for (const [i, r] of sub.chat.entries()) {
      const { id: modelId, entry } = resolveModel(catalog, principal, r.model, "chat");
      const candidates = reachableModels(catalog, modelId, "chat").map((m) => m.id);
      parts.push({
        requestId: jobRequestId(id, 1, sub.batch ? i : undefined),
        user: principal.user || r.user,
        model: candidates[0] ?? modelId,
        candidateModels: candidates,
        inputTokens: estimateMessageTokens(r.messages),
        inputTokenBound: promptTokenBound(r.messages, {
          tools: r.tools,
          toolChoice: r.toolChoice,
          responseFormat: r.responseFormat,
        }),
        maxOutputTokens: r.maxTokens ?? entry?.max_output_tokens ?? DEFAULT_MAX_OUTPUT,
        holdOutputTokens: r.maxTokens ?? 0,
      });
    }
    for (const [i, r] of sub.embed.entries()) {
      const modelId = resolveModel(catalog, principal, r.model, "embedding").id;
      const candidates = reachableModels(catalog, modelId, "embedding").map((m) => m.id);
      parts.push({
        requestId: jobRequestId(id, 1, sub.batch ? i : undefined),
        user: principal.user || r.user,
        model: candidates[0] ?? modelId,
        candidateModels: candidates,
        inputTokens: r.input.reduce((n, s) => n + estimateTextTokens(s) + 1, 0),
        inputTokenBound: promptTokenBound(r.input.map((content) => ({ content }))),
        maxOutputTokens: 0,
        holdOutputTokens: 0,
      });
    }
    const first = parts[0]!;
    const whole: AdmissionRequest = {
      requestId: jobRequestId(id, 1),
      user: first.user,
      model: first.model,
      candidateModels: [...new Set(parts.flatMap((p) => p.candidateModels))],
      inputTokens: parts.reduce((n, p) => n + p.inputTokens, 0),
      inputTokenBound: parts.reduce((n, p) => n + p.inputTokenBound, 0),
      maxOutputTokens: parts.reduce((n, p) => n + p.maxOutputTokens, 0),
      holdOutputTokens: parts.every((p) => p.holdOutputTokens > 0)
        ? parts.reduce((n, p) => n + p.holdOutputTokens, 0)
        : 0,
    };
    const admitted = await this.admission.admit(principal, whole);
    if (admitted.reservationId) {
      await this.deps.cost
        .release(admitted.reservationId)
        .catch((err: unknown) => this.deps.logger.warn({ err, job_id: id }, "job budget check: release failed"));
    }
  }

  /** The caller's job; NOT_FOUND for a missing, expired or another key's job alike. */
  async get(authorization: string | undefined, id: string): Promise<JobRecord> {
    const principal = await this.auth.authenticate(authorization);
    return this.owned(principal, id);
  }

  private async owned(principal: Principal, id: string): Promise<JobRecord> {
    if (!isJobId(id)) throw notFound(id);
    const record = await this.deps.store.get(id);
    if (!record || record.keyId !== principal.keyId) throw notFound(id);
    return record;
  }

  async list(
    authorization: string | undefined,
    page: { limit: number; after?: string | undefined },
  ): Promise<{ jobs: JobRecord[]; hasMore: boolean }> {
    const principal = await this.auth.authenticate(authorization);
    return this.deps.store.list(principal.keyId, page.limit, page.after);
  }

  /**
   * Cancels the caller's job: a queued job will never run, a running one is aborted by its worker (told at once
   * through a NATS hint, or at its next lease renewal). A finished job is returned unchanged.
   */
  async cancel(authorization: string | undefined, id: string): Promise<JobRecord> {
    const principal = await this.auth.authenticate(authorization);
    await this.owned(principal, id);
    const { transition, record } = await this.deps.store.apply(id, { type: "cancel", now: Date.now() });
    if (!record) throw notFound(id);
    if (transition.kind === "apply") this.hint(id, "cancelled");
    return record;
  }

  /** The caller's callback signing secret (created on first use); `rotate` replaces it. */
  async callbackSecret(authorization: string | undefined, rotate: boolean): Promise<string> {
    const principal = await this.auth.authenticate(authorization);
    return this.deps.store.callbackSecret(principal.keyId, rotate);
  }

  /**
   * The caller's job now and at each change of status, ending after its final state. Changes are noticed through
   * the NATS hints, and by re-reading every couple of seconds in case a hint was missed.
   */
  async *watch(authorization: string | undefined, id: string, signal: AbortSignal): AsyncGenerator<JobRecord> {
    const principal = await this.auth.authenticate(authorization);
    let record = await this.owned(principal, id);
    const nc = this.deps.nc();
    let wake: (() => void) | undefined;
    const sub = nc?.subscribe(jobUpdatedSubject(id));
    if (sub) {
      void (async () => {
        for await (const _ of sub) wake?.();
      })().catch(() => undefined);
    }
    const onAbort = () => wake?.();
    signal.addEventListener("abort", onAbort);
    try {
      yield record;
      while (!isFinal(record.status) && !signal.aborted) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, WATCH_POLL_MS);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        if (signal.aborted) return;
        const next = await this.owned(principal, id);
        if (next.status !== record.status) yield next;
        record = next;
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      sub?.unsubscribe();
    }
  }

  /** Announces a change of job `id` on core NATS (best effort). */
  hint(id: string, status: string): void {
    try {
      this.deps.nc()?.publish(jobUpdatedSubject(id), status);
    } catch {
      // A hint only saves a watcher a poll.
    }
  }
}

function checkMetadata(metadata: Record<string, string>): void {
  const entries = Object.entries(metadata);
  if (entries.length > METADATA_MAX_PAIRS) {
    throw new AppError("INVALID_ARGUMENT", `metadata holds at most ${METADATA_MAX_PAIRS} pairs`, { param: "metadata" });
  }
  for (const [k, v] of entries) {
    if (k.length > 64 || v.length > 512) {
      throw new AppError("INVALID_ARGUMENT", "metadata keys are at most 64 characters, values at most 512", {
        param: "metadata",
      });
    }
  }
}
