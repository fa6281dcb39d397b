import { randomBytes } from "node:crypto";

/**
 * The life of an async job, as a pure state machine. The job store applies these transitions atomically (a
 * compare-and-set on the record's version), so every replica's workers and API calls agree on one history:
 *
 * ```
 * queued ──claim──▶ running ──finish──▶ succeeded | failed
 *   ▲                 │  │
 *   ├────retry────────┤  (attempt + 1)
 *   └────release──────┘  (same attempt: its replica stopped; or the lease expires and the next claim takes over)
 * queued | running ──cancel──▶ cancelled
 * ```
 *
 * A final status (succeeded, failed, cancelled) never changes again, so a redelivered job message finds it and is
 * acknowledged without running. `attempt` numbers the deliberate runs (a retry after a recorded failure); a run
 * taken over after its worker died keeps the attempt, and with it the request id, so the ledger bills the usage of
 * both runs once.
 */
export const JOB_STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

/** Whether no transition leaves this status. */
export function isFinal(status: JobStatus): boolean {
  return status === "succeeded" || status === "failed" || status === "cancelled";
}

/** The part of a job record the state machine reads and writes. Times in ms since the epoch. */
export interface JobState {
  status: JobStatus;
  /** 1 for the first run; +1 for each retry after a recorded retryable failure. */
  attempt: number;
  /** The worker run holding the lease ("" when none). */
  owner: string;
  /** Until when the owner's lease holds (0 when none). */
  leaseUntil: number;
  startedAt: number | undefined;
  finishedAt: number | undefined;
}

export type JobEvent =
  /** A worker received the job's message and wants to run it. */
  | { type: "claim"; owner: string; now: number; leaseMs: number }
  /** The running worker extends its lease. */
  | { type: "heartbeat"; owner: string; now: number; leaseMs: number }
  /** The running worker stored its outcome. */
  | { type: "finish"; owner: string; now: number; outcome: "succeeded" | "failed" }
  /** The running worker failed retryably and gives the job back to the queue for another attempt. */
  | { type: "retry"; owner: string; now: number }
  /** The running worker stops (its replica shuts down) and gives the job back unfinished, same attempt. */
  | { type: "release"; owner: string; now: number }
  /** The owner cancels (a queued job never runs; a running one is aborted by its worker). */
  | { type: "cancel"; now: number };

export type Transition =
  /** Write `next`. */
  | { kind: "apply"; next: JobState }
  /** The job is already final: nothing to do (acknowledge a redelivery). */
  | { kind: "final"; status: JobStatus }
  /** Another worker's lease is still in force: try again after `retryInMs`. */
  | { kind: "busy"; retryInMs: number }
  /** The caller no longer owns the run (cancelled, or taken over after its lease expired): stop, write nothing. */
  | { kind: "lost"; status: JobStatus };

/** The next state of a job for an event, or why there is none. Pure. */
export function transition(state: JobState, event: JobEvent): Transition {
  switch (event.type) {
    case "claim": {
      if (isFinal(state.status)) return { kind: "final", status: state.status };
      if (state.status === "running" && state.owner !== event.owner && state.leaseUntil > event.now) {
        return { kind: "busy", retryInMs: state.leaseUntil - event.now };
      }
      return {
        kind: "apply",
        next: {
          ...state,
          status: "running",
          owner: event.owner,
          leaseUntil: event.now + event.leaseMs,
          startedAt: state.startedAt ?? event.now,
        },
      };
    }
    case "heartbeat":
      if (!owns(state, event.owner)) return { kind: "lost", status: state.status };
      return { kind: "apply", next: { ...state, leaseUntil: event.now + event.leaseMs } };
    case "finish":
      if (!owns(state, event.owner)) return { kind: "lost", status: state.status };
      return {
        kind: "apply",
        next: { ...state, status: event.outcome, owner: "", leaseUntil: 0, finishedAt: event.now },
      };
    case "retry":
      if (!owns(state, event.owner)) return { kind: "lost", status: state.status };
      return {
        kind: "apply",
        next: { ...state, status: "queued", attempt: state.attempt + 1, owner: "", leaseUntil: 0 },
      };
    case "release":
      if (!owns(state, event.owner)) return { kind: "lost", status: state.status };
      return { kind: "apply", next: { ...state, status: "queued", owner: "", leaseUntil: 0 } };
    case "cancel":
      if (isFinal(state.status)) return { kind: "final", status: state.status };
      return {
        kind: "apply",
        next: { ...state, status: "cancelled", owner: "", leaseUntil: 0, finishedAt: event.now },
      };
  }
}

function owns(state: JobState, owner: string): boolean {
  return state.status === "running" && state.owner === owner;
}

/** A new job id: `job_` and 96 random bits in hex. Minted by the gateway, never taken from a client. */
export function newJobId(): string {
  return `job_${randomBytes(12).toString("hex")}`;
}

const JOB_ID = /^job_[0-9a-f]{24}$/;

/** Whether `id` has the shape of a job id (anything else is answered 404 without a lookup). */
export function isJobId(id: string): boolean {
  return JOB_ID.test(id);
}

/**
 * The request id a job's run uses (its rate-limit slot, hold, usage event `Nats-Msg-Id` and ledger entry):
 * derived from the job id and attempt, and the item's index in a batch. A run that is taken over after a crash
 * reuses it, so the ledger counts both runs' usage once; a deliberate retry gets the next attempt's id, so a
 * failed attempt's (estimated) usage and the retry's are each billed.
 */
export function jobRequestId(jobId: string, attempt: number, index?: number): string {
  const base = `req_${jobId.replace(/^job_/, "")}_${attempt}`;
  return index === undefined ? base : `${base}_${index}`;
}

/**
 * RequestContext.priority of a job's requests: below the 0 of interactive requests, so where a service queues
 * work by priority, jobs wait behind live traffic (the `batch` class).
 */
export const BATCH_PRIORITY = -1;
