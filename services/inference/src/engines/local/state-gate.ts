/**
 * Lets a sequence's state change (erasing what an earlier request left in its KV cache) into a context whose other
 * sequences are generating.
 *
 * node-llama-cpp changes a sequence's state under the context's lock, and its decode loop holds that lock for as
 * long as decodes are queued: a batch, then the next one if any is waiting. A sequence that generates queues its
 * next decode as soon as its reader asks for the next token, and when those requests land before the loop checks
 * its queue, the loop never ends while any stream is generating. A request that took a slot then waited in
 * `adaptStateToTokens` until the streams already running had finished: `bench/inference/stagger.bench.mjs` (four
 * requests 5 ms apart on four slots) measured the later two waiting 750 ms on the 128x2 test model and 3.5–4.4 s on
 * 512x4, every round; with the gate, 1–11 ms. Requests started in one tick never showed it (nothing generated yet).
 *
 * The gate: while a change is pending, generating streams wait before asking for their next token, so the decode
 * loop runs dry, lets go of the lock, and the change (queued on the lock before the next batch) takes it. A change
 * takes a millisecond or two; the streams lose that once per request that starts beside them.
 */
export class StateGate {
  private pending = 0;
  private opened: Promise<void> | undefined;
  private open: (() => void) | undefined;

  /** Runs `change` (a state change of one sequence) with the generating streams held at the gate. */
  async change<T>(change: () => Promise<T>): Promise<T> {
    if (this.pending++ === 0) {
      this.opened = new Promise<void>((resolve) => {
        this.open = resolve;
      });
    }
    try {
      return await change();
    } finally {
      if (--this.pending === 0) {
        const open = this.open;
        this.opened = undefined;
        this.open = undefined;
        open?.();
      }
    }
  }

  /** What a generating stream awaits before asking for its next token: undefined when no change is pending. */
  get wait(): Promise<void> | undefined {
    return this.opened;
  }
}
