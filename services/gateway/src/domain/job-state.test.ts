import { describe, expect, it } from "vitest";
import { isJobId, type JobState, jobRequestId, newJobId, transition } from "./job-state.js";

const queued: JobState = {
  status: "queued",
  attempt: 1,
  owner: "",
  leaseUntil: 0,
  startedAt: undefined,
  finishedAt: undefined,
};
const running = (owner: string, leaseUntil: number): JobState => ({
  ...queued,
  status: "running",
  owner,
  leaseUntil,
  startedAt: 10,
});

describe("job state machine", () => {
  it("claims a queued job with a lease and a start time", () => {
    expect(transition(queued, { type: "claim", owner: "w1", now: 100, leaseMs: 30 })).toEqual({
      kind: "apply",
      next: { ...queued, status: "running", owner: "w1", leaseUntil: 130, startedAt: 100 },
    });
  });

  it("refuses a claim while another worker's lease holds, and says for how long", () => {
    expect(transition(running("w1", 130), { type: "claim", owner: "w2", now: 100, leaseMs: 30 })).toEqual({
      kind: "busy",
      retryInMs: 30,
    });
  });

  it("takes over a running job whose lease expired, keeping its attempt and start time", () => {
    const t = transition({ ...running("w1", 90), attempt: 2 }, { type: "claim", owner: "w2", now: 100, leaseMs: 30 });
    expect(t).toEqual({
      kind: "apply",
      next: { ...running("w2", 130), attempt: 2, startedAt: 10 },
    });
  });

  it("never runs a final job again", () => {
    for (const status of ["succeeded", "failed", "cancelled"] as const) {
      expect(transition({ ...queued, status }, { type: "claim", owner: "w", now: 1, leaseMs: 1 })).toEqual({
        kind: "final",
        status,
      });
      expect(transition({ ...queued, status }, { type: "cancel", now: 1 })).toEqual({ kind: "final", status });
    }
  });

  it("lets only the owner heartbeat, finish or retry", () => {
    const s = running("w1", 130);
    expect(transition(s, { type: "heartbeat", owner: "w1", now: 120, leaseMs: 30 })).toMatchObject({
      kind: "apply",
      next: { leaseUntil: 150 },
    });
    for (const e of [
      { type: "heartbeat", owner: "w2", now: 120, leaseMs: 30 },
      { type: "finish", owner: "w2", now: 120, outcome: "succeeded" },
      { type: "retry", owner: "w2", now: 120 },
    ] as const) {
      expect(transition(s, e)).toEqual({ kind: "lost", status: "running" });
    }
  });

  it("finishes with the outcome, a finish time and no lease", () => {
    expect(transition(running("w1", 130), { type: "finish", owner: "w1", now: 125, outcome: "failed" })).toEqual({
      kind: "apply",
      next: { ...running("", 0), status: "failed", finishedAt: 125 },
    });
  });

  it("gives a retried job back to the queue with the next attempt", () => {
    expect(transition(running("w1", 130), { type: "retry", owner: "w1", now: 125 })).toEqual({
      kind: "apply",
      next: { ...running("", 0), status: "queued", attempt: 2 },
    });
  });

  it("gives a released job back to the queue with the same attempt", () => {
    expect(transition(running("w1", 130), { type: "release", owner: "w1", now: 125 })).toEqual({
      kind: "apply",
      next: { ...running("", 0), status: "queued" },
    });
    expect(transition(running("w1", 130), { type: "release", owner: "w2", now: 125 }).kind).toBe("lost");
  });

  it("cancels a queued or running job; the running worker then finds its run lost", () => {
    const c = transition(running("w1", 130), { type: "cancel", now: 120 });
    expect(c).toEqual({ kind: "apply", next: { ...running("", 0), status: "cancelled", finishedAt: 120 } });
    if (c.kind !== "apply") throw new Error("unreachable");
    expect(transition(c.next, { type: "finish", owner: "w1", now: 121, outcome: "succeeded" })).toEqual({
      kind: "lost",
      status: "cancelled",
    });
    expect(transition(queued, { type: "cancel", now: 5 })).toMatchObject({
      kind: "apply",
      next: { status: "cancelled" },
    });
  });
});

describe("job ids", () => {
  it("mints well-formed, distinct ids", () => {
    const a = newJobId();
    expect(isJobId(a)).toBe(true);
    expect(newJobId()).not.toBe(a);
    expect(isJobId("job_../x")).toBe(false);
  });

  it("derives the same request id for a taken-over run and a new one per attempt and batch item", () => {
    const id = "job_0123456789abcdef01234567";
    expect(jobRequestId(id, 1)).toBe("req_0123456789abcdef01234567_1");
    expect(jobRequestId(id, 1)).toBe(jobRequestId(id, 1));
    expect(jobRequestId(id, 2)).not.toBe(jobRequestId(id, 1));
    expect(jobRequestId(id, 1, 3)).toBe("req_0123456789abcdef01234567_1_3");
  });
});
