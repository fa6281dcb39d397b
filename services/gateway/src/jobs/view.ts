import { ChatResponse, EmbedResponse } from "@tokenmesh/proto/common/v1/chat";
import { type Job, type JobResult, JobStatus } from "@tokenmesh/proto/gateway/v1/gateway";
import { AppError, type ErrorCode, toAppError, toHttpError } from "@tokenmesh/runtime";
import type { JobStatus as Status } from "../domain/job-state.js";
import { toOpenAICompletion, toOpenAIEmbeddings } from "../http/openai.mapping.js";
import type { JobError, JobRecord, StoredItem } from "./store.js";

/** The public paths of a job's endpoint. */
export const ENDPOINT_PATHS = { chat: "/v1/chat/completions", embeddings: "/v1/embeddings" } as const;

/** An error as a job stores it (never a stack or a cause: the message the sync endpoint would have shown). */
export function jobErrorOf(err: unknown): JobError {
  const e = toAppError(err);
  return { code: e.code, message: e.message, reason: e.reason, param: e.param };
}

function appErrorOf(e: JobError): AppError {
  return new AppError(e.code as ErrorCode, e.message, { reason: e.reason, param: e.param });
}

/** OpenAI's error object (`{ message, type, code, param }`) for a stored error. */
function openAIError(e: JobError) {
  const { request_id: _omit, ...error } = toHttpError(appErrorOf(e)).body.error as Record<string, unknown>;
  return error;
}

/** The body the sync endpoint would have returned for one stored answer. */
function wireBody(record: JobRecord, item: StoredItem): unknown {
  if (item.chat !== undefined) return toOpenAICompletion(ChatResponse.fromJSON(item.chat));
  if (item.embed !== undefined) return toOpenAIEmbeddings(EmbedResponse.fromJSON(item.embed), record.encodingFormat);
  return undefined;
}

const seconds = (ms: number | undefined) => (ms === undefined ? undefined : Math.floor(ms / 1000));

/**
 * A job as `GET /v1/jobs/{id}` returns it (and as its callback is POSTed): times in unix seconds; `result` exactly
 * the sync endpoint's body (a batch: `{ object: "list", data: [{ index, response } | { index, error }] }` in request
 * order); `error` OpenAI's error object. `withResult: false` leaves the result out (listings).
 */
export function jobView(record: JobRecord, withResult = true): Record<string, unknown> {
  const view: Record<string, unknown> = {
    id: record.id,
    object: record.batch ? "job.batch" : "job",
    endpoint: ENDPOINT_PATHS[record.endpoint],
    status: record.status,
    created_at: seconds(record.createdAt),
  };
  if (record.startedAt !== undefined) view.started_at = seconds(record.startedAt);
  if (record.finishedAt !== undefined) view.finished_at = seconds(record.finishedAt);
  if (record.batch) view.request_count = record.count;
  if (record.status === "succeeded" && record.result !== undefined && withResult) {
    view.result = Array.isArray(record.result)
      ? {
          object: "list",
          data: record.result.map((item, index) =>
            item.error ? { index, error: openAIError(item.error) } : { index, response: wireBody(record, item) },
          ),
        }
      : wireBody(record, record.result);
  }
  if (record.error) view.error = openAIError(record.error);
  if (Object.keys(record.metadata).length > 0) view.metadata = record.metadata;
  if (record.callbackUrl) {
    view.callback_url = record.callbackUrl;
    view.callback_status = record.callbackStatus || "pending";
  }
  return view;
}

const STATUS: Record<Status, JobStatus> = {
  queued: JobStatus.JOB_STATUS_QUEUED,
  running: JobStatus.JOB_STATUS_RUNNING,
  succeeded: JobStatus.JOB_STATUS_SUCCEEDED,
  failed: JobStatus.JOB_STATUS_FAILED,
  cancelled: JobStatus.JOB_STATUS_CANCELLED,
};

function errorDetail(e: JobError) {
  const a = appErrorOf(e);
  return {
    code: a.code,
    message: a.message,
    retryable: a.retryable,
    origin: a.origin,
    param: a.param ?? "",
    retryAfterMs: 0,
    reason: a.reason ?? "",
    upstreamStatus: 0,
  };
}

function resultOf(item: StoredItem): JobResult {
  if (item.chat !== undefined) return { chat: ChatResponse.fromJSON(item.chat) };
  if (item.embed !== undefined) return { embed: EmbedResponse.fromJSON(item.embed) };
  return { error: item.error ? errorDetail(item.error) : undefined };
}

const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());

/** The gRPC `Job` message of a record. */
export function jobMessage(record: JobRecord): Job {
  const succeeded = record.status === "succeeded" && record.result !== undefined;
  return {
    id: record.id,
    status: STATUS[record.status],
    endpoint: ENDPOINT_PATHS[record.endpoint],
    createdAt: iso(record.createdAt),
    startedAt: iso(record.startedAt),
    finishedAt: iso(record.finishedAt),
    result: succeeded && !Array.isArray(record.result) ? resultOf(record.result!) : undefined,
    batchResults: succeeded && Array.isArray(record.result) ? record.result.map(resultOf) : [],
    error: record.error ? errorDetail(record.error) : undefined,
    metadata: record.metadata,
    batch: record.batch,
  };
}
