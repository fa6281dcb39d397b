/**
 * A single-consumer queue that is also an async iterator: producers push values or fail it; the consumer awaits.
 * Used to merge the router's chunks and the guard's released text into one ordered output stream.
 */
export class AsyncQueue<T> implements AsyncIterableIterator<T> {
  private readonly items: T[] = [];
  private waiter: ((r: IteratorResult<T>) => void) | undefined;
  private failWaiter: ((err: unknown) => void) | undefined;
  private done = false;
  private error: unknown;

  push(value: T): void {
    if (this.done) return;
    const w = this.waiter;
    if (w) {
      this.waiter = undefined;
      this.failWaiter = undefined;
      w({ value, done: false });
    } else {
      this.items.push(value);
    }
  }

  /** Ends the stream after the queued values. */
  end(): void {
    if (this.done) return;
    this.done = true;
    if (this.waiter && this.items.length === 0) {
      const w = this.waiter;
      this.waiter = undefined;
      w({ value: undefined, done: true });
    }
  }

  /** Ends the stream with an error, raised after the queued values. */
  fail(err: unknown): void {
    if (this.done) return;
    this.error = err ?? new Error("failed");
    this.done = true;
    if (this.failWaiter && this.items.length === 0) {
      const f = this.failWaiter;
      this.waiter = undefined;
      this.failWaiter = undefined;
      f(this.error);
    }
  }

  next(): Promise<IteratorResult<T>> {
    if (this.items.length > 0) return Promise.resolve({ value: this.items.shift()!, done: false });
    if (this.done)
      return this.error !== undefined ? Promise.reject(this.error) : Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => {
      this.waiter = resolve;
      this.failWaiter = reject;
    });
  }

  return(): Promise<IteratorResult<T>> {
    this.done = true;
    this.items.length = 0;
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }
}
