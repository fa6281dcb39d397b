import type { CompiledPolicy } from "./policy.js";
import { StreamRedactor } from "./redactor.js";

/**
 * Which text of a choice a fragment belongs to: its content, its refusal, or the arguments of its tool call `n`
 * (the tool call's own index). Each slot of each choice is redacted as a text of its own.
 */
export type OutputSlot = "content" | "refusal" | `tool:${number}`;

/** Text released for one choice. */
export interface OutputRelease {
  index: number;
  /** The slot the text belongs to ("content" unless written to another one). */
  slot: OutputSlot;
  text: string;
  /** Rules that redacted something in `text`, without repeats. */
  ruleIds: string[];
  /** The policy blocks this output: the stream must stop. `text` is then empty. */
  blocked: boolean;
  /** This answers a `flush` of `index`: `text` is the rest of that choice (possibly empty). */
  flushed: boolean;
}

/**
 * The output side of one stream: a StreamRedactor per choice index and slot, so fragments of different choices,
 * and a choice's content, refusal and each tool call's arguments, never mix. Remembers which rules redacted
 * anything (for the end-of-stream decision) and whether it blocked — a block in any slot stops the whole output;
 * after a block it releases nothing more.
 */
export class OutputFilter {
  /** Choice index → slot → redactor; slots in the order they were first written. */
  private readonly redactors = new Map<number, Map<OutputSlot, StreamRedactor>>();
  private readonly redacted = new Set<string>();
  private hitList: string[] = [];
  private blockRule: string | undefined;

  constructor(private readonly policy: CompiledPolicy) {}

  /**
   * Takes a fragment of choice `index` (of its content unless `slot` says otherwise); returns what may be released
   * now (undefined when nothing).
   */
  text(index: number, text: string, slot: OutputSlot = "content"): OutputRelease | undefined {
    if (this.blockRule !== undefined) return undefined;
    let slots = this.redactors.get(index);
    if (!slots) {
      slots = new Map();
      this.redactors.set(index, slots);
    }
    let r = slots.get(slot);
    if (!r) {
      r = new StreamRedactor(this.policy.outputRules, { stopOnBlock: true });
      slots.set(slot, r);
    }
    return this.release(index, slot, r.push(text), false);
  }

  /**
   * Ends one slot of choice `index` (its content by default): releases what it held back, always as one release
   * marked `flushed` (empty text when nothing was held, or the slot was never written). Undefined only after a
   * block.
   */
  flush(index: number, slot: OutputSlot = "content"): OutputRelease | undefined {
    if (this.blockRule !== undefined) return undefined;
    const slots = this.redactors.get(index);
    const r = slots?.get(slot);
    slots?.delete(slot);
    if (slots?.size === 0) this.redactors.delete(index);
    const out = this.release(index, slot, r ? r.flush() : { text: "", hits: [] }, true);
    return out ?? { index, slot, text: "", ruleIds: [], blocked: false, flushed: true };
  }

  /**
   * Ends choice `index`: flushes its content (always, as {@link flush} does) and then every other slot written,
   * in the order first written. Stops at a block: the last release is then the blocked one. Empty after a block.
   */
  flushChoice(index: number): OutputRelease[] {
    const others = [...(this.redactors.get(index)?.keys() ?? [])].filter((s) => s !== "content");
    const out: OutputRelease[] = [];
    for (const slot of ["content" as const, ...others]) {
      const r = this.flush(index, slot);
      if (!r) break;
      out.push(r);
      if (r.blocked) break;
    }
    return out;
  }

  /**
   * Ends the stream: releases what every choice still open held (not marked `flushed`), in index order and each
   * choice's slots in the order first written.
   */
  end(): OutputRelease[] {
    const out: OutputRelease[] = [];
    if (this.blockRule !== undefined) return out;
    for (const index of [...this.redactors.keys()].sort((a, b) => a - b)) {
      const slots = this.redactors.get(index)!;
      this.redactors.delete(index);
      for (const [slot, r] of slots) {
        const rel = this.release(index, slot, r.flush(), false);
        if (rel) out.push(rel);
        if (this.blockRule !== undefined) return out;
      }
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
    slot: OutputSlot,
    r: { text: string; hits: string[]; blockedBy?: string },
    flushed: boolean,
  ): OutputRelease | undefined {
    this.hitList.push(...r.hits);
    if (r.blockedBy !== undefined) {
      this.blockRule = r.blockedBy;
      this.redactors.clear();
      return { index, slot, text: "", ruleIds: [r.blockedBy], blocked: true, flushed: false };
    }
    for (const id of r.hits) this.redacted.add(id);
    if (r.text === "" && r.hits.length === 0 && !flushed) return undefined;
    return { index, slot, text: r.text, ruleIds: [...new Set(r.hits)], blocked: false, flushed };
  }
}
