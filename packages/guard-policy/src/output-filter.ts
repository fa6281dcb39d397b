import type { CompiledPolicy } from "./policy.js";
import { StreamRedactor } from "./redactor.js";

/** Text released for one choice. */
export interface OutputRelease {
  index: number;
  text: string;
  /** Rules that redacted something in `text`, without repeats. */
  ruleIds: string[];
  /** The policy blocks this output: the stream must stop. `text` is then empty. */
  blocked: boolean;
  /** This answers a `flush` of `index`: `text` is the rest of that choice (possibly empty). */
  flushed: boolean;
}

/**
 * The output side of one stream: a StreamRedactor per choice index, so fragments of different choices never
 * mix. Remembers which rules redacted anything (for the end-of-stream decision) and whether it blocked; after a
 * block it releases nothing more.
 */
export class OutputFilter {
  private readonly redactors = new Map<number, StreamRedactor>();
  private readonly redacted = new Set<string>();
  private hitList: string[] = [];
  private blockRule: string | undefined;

  constructor(private readonly policy: CompiledPolicy) {}

  /** Takes a fragment of choice `index`; returns what may be released now (undefined when nothing). */
  text(index: number, text: string): OutputRelease | undefined {
    if (this.blockRule !== undefined) return undefined;
    let r = this.redactors.get(index);
    if (!r) {
      r = new StreamRedactor(this.policy.outputRules, { stopOnBlock: true });
      this.redactors.set(index, r);
    }
    return this.release(index, r.push(text), false);
  }

  /**
   * Ends choice `index`: releases what it held back, always as one release marked `flushed` (empty text when
   * nothing was held, or the index was never seen). Undefined only after a block.
   */
  flush(index: number): OutputRelease | undefined {
    if (this.blockRule !== undefined) return undefined;
    const r = this.redactors.get(index);
    this.redactors.delete(index);
    const out = this.release(index, r ? r.flush() : { text: "", hits: [] }, true);
    return out ?? { index, text: "", ruleIds: [], blocked: false, flushed: true };
  }

  /** Ends the stream: releases what every choice still open held (not marked `flushed`), in index order. */
  end(): OutputRelease[] {
    const out: OutputRelease[] = [];
    if (this.blockRule !== undefined) return out;
    for (const index of [...this.redactors.keys()].sort((a, b) => a - b)) {
      const r = this.redactors.get(index)!;
      this.redactors.delete(index);
      const rel = this.release(index, r.flush(), false);
      if (rel) out.push(rel);
    }
    return out;
  }

  /** Rules that redacted something so far, sorted. */
  get redactedRuleIds(): string[] {
    return [...this.redacted].sort();
  }

  /** Every match so far (for hit counters); cleared when read. */
  takeHits(): string[] {
    const h = this.hitList;
    this.hitList = [];
    return h;
  }

  /** The block rule that stopped the stream, if any. */
  get blockedBy(): string | undefined {
    return this.blockRule;
  }

  private release(
    index: number,
    r: { text: string; hits: string[]; blockedBy?: string },
    flushed: boolean,
  ): OutputRelease | undefined {
    this.hitList.push(...r.hits);
    if (r.blockedBy !== undefined) {
      this.blockRule = r.blockedBy;
      this.redactors.clear();
      return { index, text: "", ruleIds: [r.blockedBy], blocked: true, flushed: false };
    }
    for (const id of r.hits) this.redacted.add(id);
    if (r.text === "" && r.hits.length === 0 && !flushed) return undefined;
    return { index, text: r.text, ruleIds: [...new Set(r.hits)], blocked: false, flushed };
  }
}
