import { AppError, abortedError, ResourceExhaustedError } from "@tokenmesh/runtime";
import { classOf, FairQueue, type QueueTicket } from "./fair-queue.js";

/** Called whenever the number of waiting or busy slots changes. */
export interface SlotPoolListener {
  queueDepth(n: number): void;
  active(n: number): void;
}

interface Waiter<T> {
  resolve(slot: T): void;
  reject(err: unknown): void;
  signal: AbortSignal;
  onAbort(): void;
}

/** Who is asking for a slot: the order of the queue (fair-queue.ts) depends on it. */
export interface SlotRequest {
  /** `RequestContext.priority`: 1 interactive, 0 (or unset) standard, -1 batch. */
  priority?: number;
  /** The tenant whose turn it is (the team, else the key id); requests without one share a turn. */
  tenant?: string;
}

/** A waiting batch request gains one class per this long (see FairQueue). */
export const DEFAULT_AGING_MS = 10_000;

/**
 * A fixed set of slots (the sequences of one llama context) handed out by priority class, then tenant turn, then
 * arrival (FairQueue: a higher class first, with aging; round robin between tenants; FIFO within one).
 *
 * Guarantees:
 * - at most `slots.length` holders at once; a released slot goes straight to the next waiter in that order;
 * - at most `queueSize` waiters; one more is refused with RESOURCE_EXHAUSTED (retryable) without waiting;
 * - a waiter whose signal aborts leaves the queue at once and is rejected with CANCELLED;
 * - after `close()`, waiters and new callers are rejected with UNAVAILABLE.
 */
export class SlotPool<T> {
  private readonly free: T[];
  private readonly waiters: FairQueue<Waiter<T>>;
  private busy = 0;
  private closed = false;

  constructor(
    slots: readonly T[],
    private queueSize: number,
    private readonly label: string,
    private readonly listener?: SlotPoolListener,
    options: { agingMs?: number; now?: () => number } = {},
  ) {
    this.free = [...slots];
    this.waiters = new FairQueue(options.agingMs ?? DEFAULT_AGING_MS, options.now);
  }

  /** Number of requests waiting for a slot. */
  get queued(): number {
    return this.waiters.size;
  }

  /** Number of slots currently held. */
  get active(): number {
    return this.busy;
  }

  /** Changes the queue bound; waiters already queued keep their place. */
  setQueueSize(n: number): void {
    this.queueSize = n;
  }

  /** Takes a free slot, or waits for one in the pool's order. The caller must `release` it exactly once. */
  acquire(signal: AbortSignal, who: SlotRequest = {}): Promise<T> {
    if (this.closed) return Promise.reject(new AppError("UNAVAILABLE", `model ${this.label} is unloading`));
    if (signal.aborted) return Promise.reject(abortedError(signal));
    const slot = this.free.pop();
    if (slot !== undefined) {
      this.busy++;
      this.listener?.active(this.busy);
      return Promise.resolve(slot);
    }
    if (this.waiters.size >= this.queueSize) {
      return Promise.reject(
        new ResourceExhaustedError(
          `model ${this.label} is busy: ${this.busy} running and ${this.waiters.size} queued`,
          {
            reason: "engine_queue_full",
            retryAfterMs: 1000,
          },
        ),
      );
    }
    return new Promise<T>((resolve, reject) => {
      let ticket: QueueTicket | undefined;
      const waiter: Waiter<T> = {
        resolve,
        reject,
        signal,
        onAbort: () => {
          if (ticket !== undefined) this.waiters.remove(ticket);
          this.listener?.queueDepth(this.waiters.size);
          reject(abortedError(signal));
        },
      };
      signal.addEventListener("abort", waiter.onAbort, { once: true });
      ticket = this.waiters.push(waiter, classOf(who.priority), who.tenant ?? "");
      this.listener?.queueDepth(this.waiters.size);
    });
  }

  /** Returns a slot: handed to the next waiter if any, else made free. */
  release(slot: T): void {
    const next = this.waiters.shift();
    if (next !== undefined) {
      next.signal.removeEventListener("abort", next.onAbort);
      this.listener?.queueDepth(this.waiters.size);
      next.resolve(slot);
      return;
    }
    this.busy--;
    this.free.push(slot);
    this.listener?.active(this.busy);
  }

  /** Rejects every waiter and refuses new callers; held slots stay with their holders until released. */
  close(): void {
    this.closed = true;
    for (const w of this.waiters.drain()) {
      w.signal.removeEventListener("abort", w.onAbort);
      w.reject(new AppError("UNAVAILABLE", `model ${this.label} is unloading`));
    }
    this.listener?.queueDepth(0);
  }
}
