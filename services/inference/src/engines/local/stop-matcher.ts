/**
 * Finds stop strings in streamed text.
 *
 * Text that could still be the start of a stop string is held back, so a caller never emits part of a stop string
 * and never has to take text back. What `push` returns is safe to stream; `flush` returns what was held back once
 * generation has ended without a stop.
 */
export class StopMatcher {
  private readonly stops: string[];
  private held = "";

  constructor(stops: readonly string[]) {
    this.stops = stops.filter((s) => s.length > 0);
  }

  /**
   * Adds generated text. Returns the text that may be emitted now and whether a stop string was found; on a stop,
   * `emit` is the text before the earliest stop string and everything after it is dropped.
   */
  push(text: string): { emit: string; stopped: boolean } {
    if (this.stops.length === 0) return { emit: text, stopped: false };
    const buf = this.held + text;
    let at = -1;
    for (const s of this.stops) {
      const i = buf.indexOf(s);
      if (i >= 0 && (at < 0 || i < at)) at = i;
    }
    if (at >= 0) {
      this.held = "";
      return { emit: buf.slice(0, at), stopped: true };
    }
    let hold = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, buf.length); k > hold; k--) {
        if (buf.endsWith(s.slice(0, k))) {
          hold = k;
          break;
        }
      }
    }
    this.held = buf.slice(buf.length - hold);
    return { emit: buf.slice(0, buf.length - hold), stopped: false };
  }

  /** The held-back text, when generation ended for another reason than a stop string. */
  flush(): string {
    const rest = this.held;
    this.held = "";
    return rest;
  }
}
