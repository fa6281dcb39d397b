import {
  AuditEvent,
  BudgetThresholdCrossed,
  GuardDecision,
  JobCallback,
  JobSubmitted,
  UsageRecorded,
  UsageServedBatch,
} from "@tokenmesh/proto/events/v1/events";

/** Every NATS subject Tokenmesh uses. Declared here only. */
export const Subjects = {
  usageRecorded: "llm.usage.recorded.v1",
  /**
   * What a provider (or the local engine) served for a request, one report per message, from routers of earlier
   * releases: still consumed, so a rolling upgrade loses none of their reports.
   */
  usageServed: "llm.usage.served.v1",
  /** What the providers served, in batches of reports, published by the routers that called them. */
  usageServedBatch: "llm.usage.served.v2",
  budgetThreshold: "llm.budget.threshold.v1",
  guardDecision: "llm.guard.decision.v1",
  jobSubmitted: "llm.jobs.submitted.v1",
  /** A finished job's callback to deliver (LLM_JOBS work queue, consumed by the gateways' callback senders). */
  jobCallback: "llm.jobs.callback.v1",
  /**
   * Core NATS only (never stored): `llm.jobs.updated.v1.<job id>` says a job's state changed (payload: its status),
   * so watchers re-read it and the worker running a cancelled job aborts it at once. A hint, not a record: the job
   * store is the truth, and watchers also re-read it on a timer.
   */
  jobUpdatedPrefix: "llm.jobs.updated.v1",
  /** One per change made through the admin API: who, what, when, the request id; never a secret. */
  audit: "llm.audit.v1",
  /** Messages a consumer gave up on: `llm.deadletter.v1.<original subject>`. */
  deadLetterPrefix: "llm.deadletter.v1",
} as const;

/** The dead-letter subject for messages of `subject`. */
export function deadLetterSubject(subject: string): string {
  return `${Subjects.deadLetterPrefix}.${subject}`;
}

/** The core-NATS subject announcing a change of job `jobId` (see `Subjects.jobUpdatedPrefix`). */
export function jobUpdatedSubject(jobId: string): string {
  return `${Subjects.jobUpdatedPrefix}.${jobId}`;
}

/** The canonical proto3 JSON codec ts-proto generates for each event message. */
export interface JsonCodec<T> {
  toJSON(message: T): unknown;
  fromJSON(object: unknown): T;
}

/** An event: its subject, the stream that stores it, and its payload codec. */
export interface EventType<T> {
  readonly subject: string;
  readonly stream: string;
  readonly codec: JsonCodec<T>;
}

export const UsageRecordedEvent: EventType<UsageRecorded> = {
  subject: Subjects.usageRecorded,
  stream: "LLM_USAGE",
  codec: UsageRecorded,
};

/**
 * A router's record of what the providers served one request (`Nats-Msg-Id` = `<request id>:served`), as routers of
 * earlier releases published it; the cost service still consumes it (see {@link UsageServedBatchEvent}).
 */
export const UsageServedEvent: EventType<UsageRecorded> = {
  subject: Subjects.usageServed,
  stream: "LLM_USAGE",
  codec: UsageRecorded,
};

/**
 * The routers' records of what the providers served, a batch per message (`Nats-Msg-Id` = `<source>:<sequence>`):
 * they reach the ledger even when the gateway dies, or the client leaves, before the gateway's own event says so.
 * The ledger bills each request once, at the largest of its reports.
 */
export const UsageServedBatchEvent: EventType<UsageServedBatch> = {
  subject: Subjects.usageServedBatch,
  stream: "LLM_USAGE",
  codec: UsageServedBatch,
};

export const BudgetThresholdEvent: EventType<BudgetThresholdCrossed> = {
  subject: Subjects.budgetThreshold,
  stream: "LLM_BUDGET",
  codec: BudgetThresholdCrossed,
};

export const GuardDecisionEvent: EventType<GuardDecision> = {
  subject: Subjects.guardDecision,
  stream: "LLM_GUARD",
  codec: GuardDecision,
};

export const JobSubmittedEvent: EventType<JobSubmitted> = {
  subject: Subjects.jobSubmitted,
  stream: "LLM_JOBS",
  codec: JobSubmitted,
};

/** `Nats-Msg-Id` = `<job id>:callback`: a job's final state is called back once per job (at least once to the URL). */
export const JobCallbackEvent: EventType<JobCallback> = {
  subject: Subjects.jobCallback,
  stream: "LLM_JOBS",
  codec: JobCallback,
};

/** Admin changes (keys, budgets, admin credentials, jobs); `Nats-Msg-Id` = the admin request's id. */
export const AuditTrailEvent: EventType<AuditEvent> = {
  subject: Subjects.audit,
  stream: "LLM_AUDIT",
  codec: AuditEvent,
};

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Encodes an event as canonical proto3 JSON bytes. */
export function encodeEvent<T>(type: EventType<T>, message: T): Uint8Array {
  return encoder.encode(JSON.stringify(type.codec.toJSON(message)));
}

/** Decodes canonical proto3 JSON bytes; throws on malformed JSON. */
export function decodeEvent<T>(type: EventType<T>, data: Uint8Array): T {
  return type.codec.fromJSON(JSON.parse(decoder.decode(data)));
}
