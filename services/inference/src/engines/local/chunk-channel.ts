/**
 * A single-consumer queue between a producer task and an async iterator of batches.
 *
 * The producer never waits for the consumer: generation runs at model speed and frees its slot on time even when
 * the consumer is slow or has gone away. Buffering is bounded by the producer (max_tokens chunks at most).
 */
export class ChunkChannel<T> {
  private readonly items: T[] = [];
  private done = false;
  private error: unknown = undefined;
  private failed = false;
  private wake: (() => void) | undefined;

  push(item: T): void {
    if (this.done) return;
    this.items.push(item);
    this.notify();
  }

  /** Ends the stream normally after the buffered items. */
  end(): void {
    this.done = true;
    this.notify();
  }

  /** Ends the stream with an error, thrown to the consumer after the buffered items. */
  fail(err: unknown): void {
    if (this.done) return;
    this.failed = true;
    this.error = err;
    this.done = true;
    this.notify();
  }

  /**
   * The stream as batches: every buffered item at once. After a wake-up it lets the producer's next decode
   * (node-llama-cpp schedules it with setImmediate) be dispatched before the consumer encodes and writes: the
   * write then overlaps the decode instead of delaying it, and a consumer that falls behind takes several items
   * per message. With `intervalMs`, batches after the first are at least that far apart (unless the stream ends).
   */
  async *batches(intervalMs = 0): AsyncGenerator<T[]> {
    let last: number | undefined;
    for (;;) {
      if (this.items.length > 0) {
        // After the first batch, gather for up to `intervalMs` since the previous one; the end is never delayed.
        const wait = last === undefined || intervalMs <= 0 ? 0 : last + intervalMs - performance.now();
        if (wait >= 1 && !this.done) await this.endOrTimeout(wait);
        yield this.items.splice(0);
        last = performance.now();
        continue;
      }
      if (this.done) {
        if (this.failed) throw this.error;
        return;
      }
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
      // Two turns of the check phase: the producer's next decode is queued with setImmediate only a few microtasks
      // after the push that woke us, i.e. after our first setImmediate; the second one lands in the next loop
      // iteration, so the decode is always dispatched before we encode and write.
      await new Promise<void>((resolve) => setImmediate(resolve));
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /** Resolves after `ms`, or as soon as the stream ends (pushes meanwhile do not cut the wait short). */
  private endOrTimeout(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.wake = undefined;
        resolve();
      }, ms);
      // notify() takes the waker off before calling it: put it back after each push so the end still cuts the wait.
      const onWake = () => {
        if (!this.done) {
          this.wake = onWake;
          return;
        }
        clearTimeout(timer);
        resolve();
      };
      this.wake = onWake;
    });
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }
}
