import { AppError, abortedError, ResourceExhaustedError } from "@tokenmesh/runtime";

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

/**
 * A fixed set of slots (the sequences of one llama context) handed out first come, first served.
 *
 * Guarantees:
 * - at most `slots.length` holders at once; a released slot goes straight to the oldest waiter;
 * - at most `queueSize` waiters; one more is refused with RESOURCE_EXHAUSTED (retryable) without waiting;
 * - a waiter whose signal aborts leaves the queue at once and is rejected with CANCELLED;
 * - after `close()`, waiters and new callers are rejected with UNAVAILABLE.
 */
export class SlotPool<T> {
  private readonly free: T[];
  private readonly waiters: Waiter<T>[] = [];
  private busy = 0;
  private closed = false;

  constructor(
    slots: readonly T[],
    private queueSize: number,
    private readonly label: string,
    private readonly listener?: SlotPoolListener,
  ) {
    this.free = [...slots];
  }

  /** Number of requests waiting for a slot. */
  get queued(): number {
    return this.waiters.length;
  }

  /** Number of slots currently held. */
  get active(): number {
    return this.busy;
  }

  /** Changes the queue bound; waiters already queued keep their place. */
  setQueueSize(n: number): void {
    this.queueSize = n;
  }

  /** Takes a free slot, or waits in FIFO order for one. The caller must `release` it exactly once. */
  acquire(signal: AbortSignal): Promise<T> {
    if (this.closed) return Promise.reject(new AppError("UNAVAILABLE", `model ${this.label} is unloading`));
    if (signal.aborted) return Promise.reject(abortedError(signal));
    const slot = this.free.pop();
    if (slot !== undefined) {
      this.busy++;
      this.listener?.active(this.busy);
      return Promise.resolve(slot);
    }
    if (this.waiters.length >= this.queueSize) {
      return Promise.reject(
        new ResourceExhaustedError(
          `model ${this.label} is busy: ${this.busy} running and ${this.waiters.length} queued`,
          {
            reason: "engine_queue_full",
            retryAfterMs: 1000,
          },
        ),
      );
    }
    return new Promise<T>((resolve, reject) => {
      const waiter: Waiter<T> = {
        resolve,
        reject,
        signal,
        onAbort: () => {
          const i = this.waiters.indexOf(waiter);
          if (i >= 0) this.waiters.splice(i, 1);
          this.listener?.queueDepth(this.waiters.length);
          reject(abortedError(signal));
        },
      };
      signal.addEventListener("abort", waiter.onAbort, { once: true });
      this.waiters.push(waiter);
      this.listener?.queueDepth(this.waiters.length);
    });
  }

  /** Returns a slot: handed to the oldest waiter if any, else made free. */
  release(slot: T): void {
    const next = this.waiters.shift();
    if (next !== undefined) {
      next.signal.removeEventListener("abort", next.onAbort);
      this.listener?.queueDepth(this.waiters.length);
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
    for (const w of this.waiters.splice(0)) {
      w.signal.removeEventListener("abort", w.onAbort);
      w.reject(new AppError("UNAVAILABLE", `model ${this.label} is unloading`));
    }
    this.listener?.queueDepth(0);
  }
}
