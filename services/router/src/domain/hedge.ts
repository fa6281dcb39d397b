import type { HedgeConfig } from "@tokenmesh/catalog";

/** When and where a hedge goes, resolved for one request. */
export interface HedgePlan {
  /** Wait without a first token before each extra attempt, in ms. */
  afterMs: number;
  /** The catalog id the extra attempts go to. */
  to: string;
  /** Extra attempts at most. */
  max: number;
}

/**
 * The hedge plan of a model, or undefined when it has none or its wait is not known yet: `after_percentile` reads
 * the model's recent time to first token (`percentile`), and falls back to `after_ms` while samples are too few.
 */
export function hedgePlan(
  modelId: string,
  config: HedgeConfig | undefined,
  percentile: (modelId: string, p: number) => number | undefined,
): HedgePlan | undefined {
  if (config === undefined) return undefined;
  const fromStats = config.after_percentile === undefined ? undefined : percentile(modelId, config.after_percentile);
  const afterMs = fromStats ?? config.after_ms;
  if (afterMs === undefined) return undefined;
  return { afterMs: Math.max(1, Math.round(afterMs)), to: config.to ?? modelId, max: config.max };
}

/** One running attempt: its chunks, and how to stop it at once. */
export interface HedgeAttempt<C> {
  chunks: AsyncIterable<C>;
  /** Stops the attempt now (aborts the provider call); its stream then ends or fails soon after. */
  cancel(): void;
}

/** Schedules `fn` after `ms`; returns a function that cancels it. Injectable for tests. */
export type Timer = (ms: number, fn: () => void) => () => void;

const realTimer: Timer = (ms, fn) => {
  const t = setTimeout(fn, ms);
  return () => clearTimeout(t);
};

export interface HedgeOptions<C> {
  primary: string;
  plan: HedgePlan | undefined;
  /** Starts an attempt on `modelId`; `index` is 0 for the primary, 1.. for hedges. */
  start(modelId: string, index: number): HedgeAttempt<C>;
  timer?: Timer | undefined;
  /** Called once, when an attempt produced the first chunk (or ended cleanly without any) and so won. */
  onWinner?(modelId: string, index: number): void;
  /** Called when a hedge attempt starts. */
  onHedge?(modelId: string, index: number): void;
}

type Step<C> = { ok: true; value: IteratorResult<C> } | { ok: false; error: unknown };

interface Racer<C> {
  model: string;
  index: number;
  iterator: AsyncIterator<C>;
  cancel(): void;
  next: Promise<Step<C>>;
  failed: boolean;
}

/**
 * Hedged request: starts the primary attempt; whenever `plan.afterMs` passes without a first chunk from any
 * attempt, starts another on `plan.to` (at most `plan.max` more). The first attempt to produce a chunk (or to end
 * cleanly with none) wins: every other attempt is cancelled at once and the winner's chunks are yielded in order.
 *
 * An attempt that fails before its first chunk drops out of the race; the others go on, and no further hedge is
 * started once the primary failed (retrying a failure is the fallback policy's job, with its backoff). When every
 * attempt started has failed, the first failure is thrown. Stopping iteration early cancels whatever still runs.
 */
export async function* hedged<C>(options: HedgeOptions<C>): AsyncGenerator<C> {
  const { plan, start } = options;
  const timer = options.timer ?? realTimer;
  const racers: Racer<C>[] = [];
  let wake: () => void = () => {};
  let woken = new Promise<void>((r) => (wake = r));
  let hedgesLeft = plan?.max ?? 0;
  let cancelTimer: (() => void) | undefined;
  let primaryFailed = false;

  const pull = (r: Racer<C>) => {
    r.next = r.iterator.next().then(
      (value): Step<C> => ({ ok: true, value }),
      (error: unknown): Step<C> => ({ ok: false, error }),
    );
  };
  const launch = (model: string, index: number) => {
    const attempt = start(model, index);
    const racer = {
      model,
      index,
      iterator: attempt.chunks[Symbol.asyncIterator](),
      cancel: () => attempt.cancel(),
    } as Racer<C>;
    racer.failed = false;
    pull(racer);
    racers.push(racer);
  };
  const arm = () => {
    if (plan === undefined || hedgesLeft <= 0) return;
    cancelTimer = timer(plan.afterMs, () => {
      cancelTimer = undefined;
      if (primaryFailed || hedgesLeft <= 0) return;
      hedgesLeft--;
      launch(plan.to, racers.length);
      options.onHedge?.(plan.to, racers.length - 1);
      wake();
      arm();
    });
  };
  const stop = (r: Racer<C>) => {
    r.cancel();
    // Queued behind the pending next(), which the cancel makes settle soon; its outcome no longer matters.
    r.iterator.return?.().catch(() => {});
  };

  launch(options.primary, 0);
  arm();
  let winner: Racer<C> | undefined;
  let first: IteratorResult<C> | undefined;
  let firstError: unknown;
  let finished = false;
  try {
    while (winner === undefined) {
      const live = racers.filter((r) => !r.failed);
      if (live.length === 0) throw firstError;
      const step = await Promise.race([
        ...live.map((r) => r.next.then((s) => ({ r, s }))),
        woken.then(() => undefined),
      ]);
      if (step === undefined) {
        woken = new Promise<void>((r) => (wake = r));
        continue;
      }
      if (!step.s.ok) {
        step.r.failed = true;
        if (step.r.index === 0) primaryFailed = true;
        if (firstError === undefined || step.r.index === 0) firstError = step.s.error;
        continue;
      }
      winner = step.r;
      first = step.s.value;
    }
    cancelTimer?.();
    for (const r of racers) if (r !== winner && !r.failed) stop(r);
    options.onWinner?.(winner.model, winner.index);
    if (first?.done) {
      finished = true;
      return;
    }
    yield first?.value as C;
    for (;;) {
      const next = await winner.iterator.next();
      if (next.done) {
        finished = true;
        return;
      }
      yield next.value;
    }
  } catch (err) {
    finished = winner !== undefined;
    throw err;
  } finally {
    cancelTimer?.();
    if (winner === undefined) {
      for (const r of racers) if (!r.failed) stop(r);
    } else if (!finished) {
      await winner.iterator.return?.();
    }
  }
}
