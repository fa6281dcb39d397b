import {
  JetStreamApiError,
  type JetStreamManager,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";
import { Subjects } from "./subjects.js";

const DAY_NS = nanos(24 * 60 * 60 * 1000);

/** The streams of the design. Each producer ensures the streams it writes to at start-up. */
export const StreamSpecs: Record<string, Partial<StreamConfig> & { name: string; subjects: string[] }> = {
  LLM_USAGE: {
    name: "LLM_USAGE",
    subjects: [Subjects.usageRecorded, Subjects.usageServed, Subjects.usageServedBatch],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    max_age: 30 * DAY_NS,
    // Publishers retry with the request id as Nats-Msg-Id; duplicates within this window are dropped.
    duplicate_window: nanos(10 * 60 * 1000),
  },
  LLM_BUDGET: {
    name: "LLM_BUDGET",
    subjects: [Subjects.budgetThreshold],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    max_age: 30 * DAY_NS,
    duplicate_window: nanos(10 * 60 * 1000),
  },
  LLM_GUARD: {
    name: "LLM_GUARD",
    subjects: [Subjects.guardDecision],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    max_age: 30 * DAY_NS,
  },
  LLM_JOBS: {
    name: "LLM_JOBS",
    // Work queues: a message is gone once its one consumer acknowledges it (each subject has one durable consumer).
    subjects: [Subjects.jobSubmitted, Subjects.jobCallback],
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.File,
    max_age: 7 * DAY_NS,
    // A submission retried with the same job id (Nats-Msg-Id) is stored once.
    duplicate_window: nanos(10 * 60 * 1000),
  },
  LLM_AUDIT: {
    name: "LLM_AUDIT",
    subjects: [Subjects.audit],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    // An audit trail outlives the usage ledger's window: a year, published again with the same id at most once.
    max_age: 365 * DAY_NS,
    duplicate_window: nanos(10 * 60 * 1000),
  },
  LLM_DEADLETTER: {
    name: "LLM_DEADLETTER",
    subjects: [`${Subjects.deadLetterPrefix}.>`],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    max_age: 30 * DAY_NS,
  },
};

/**
 * Creates the named streams, or updates them to the spec when they exist. Safe to call from many replicas at
 * once: a lost creation race becomes an update.
 */
export async function ensureStreams(jsm: JetStreamManager, names: string[]): Promise<void> {
  for (const name of names) {
    const spec = StreamSpecs[name];
    if (!spec) throw new Error(`unknown stream ${name}`);
    try {
      await jsm.streams.info(name);
      await jsm.streams.update(name, spec);
    } catch (err) {
      if (!(err instanceof JetStreamApiError) || err.status !== 404) throw err;
      try {
        await jsm.streams.add(spec);
      } catch (addErr) {
        // Another replica created it between our info and add.
        if (addErr instanceof JetStreamApiError && addErr.message.includes("already in use")) {
          await jsm.streams.update(name, spec);
        } else {
          throw addErr;
        }
      }
    }
  }
}
