/** The queue's classes, lowest first (the public PriorityClass enum's numbers). */
export const BATCH = 1;
export const STANDARD = 2;
export const INTERACTIVE = 3;

/**
 * The class of a `RequestContext.priority` number (higher first, 0 standard): below 0 batch, 0 (also unset, e.g. an
 * internal caller) standard, above 0 interactive.
 */
export function classOf(priority: number | undefined): number {
  if (priority === undefined || priority === 0) return STANDARD;
  return priority < 0 ? BATCH : INTERACTIVE;
}

interface Entry<T> {
  value: T;
  cls: number;
  tenant: string;
  arrivedAt: number;
  removed: boolean;
}

/** A queued value; pass it to `remove` to take the value out before it is served. */
export interface QueueTicket {
  readonly cls: number;
  readonly tenant: string;
}

/**
 * The waiting order of the local engine's slot queue, the same policy as the gateway's concurrency queues
 * (services/gateway/src/adapters/redis-concurrency.ts):
 *
 * 1. class: the class whose oldest waiter has the highest `class + waited / agingMs` goes first (ties: the higher
 *    class), so a waiting request gains one class per `agingMs` and a lower class is never starved: a batch request
 *    that waited 2 × agingMs is served before an interactive one that just arrived;
 * 2. tenant: within that class, tenants take turns (round robin, a tenant new to the class joins at the back), so
 *    one tenant's burst does not starve another's single request;
 * 3. within a tenant and class, first in, first out.
 *
 * With one class and one tenant it is exactly FIFO. `now` is injected so the order is testable without waiting.
 */
export class FairQueue<T> {
  /** Per class, tenants in turn order, each with its FIFO of entries. */
  private readonly classes = new Map<number, Map<string, Entry<T>[]>>();
  private count = 0;

  constructor(
    private readonly agingMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  get size(): number {
    return this.count;
  }

  /** Queues `value` at the back of its tenant's line in its class (BATCH, STANDARD or INTERACTIVE). */
  push(value: T, cls: number, tenant: string): QueueTicket {
    const entry: Entry<T> = { value, cls, tenant, arrivedAt: this.now(), removed: false };
    let tenants = this.classes.get(cls);
    if (tenants === undefined) {
      tenants = new Map();
      this.classes.set(cls, tenants);
    }
    const line = tenants.get(tenant);
    if (line === undefined) tenants.set(tenant, [entry]);
    else line.push(entry);
    this.count++;
    return entry;
  }

  /** Takes a queued value out (an aborted waiter); false when it was already served or removed. */
  remove(ticket: QueueTicket): boolean {
    const entry = ticket as Entry<T>;
    if (entry.removed) return false;
    const tenants = this.classes.get(entry.cls);
    const line = tenants?.get(entry.tenant);
    const i = line?.indexOf(entry) ?? -1;
    if (tenants === undefined || line === undefined || i < 0) return false;
    line.splice(i, 1);
    if (line.length === 0) tenants.delete(entry.tenant);
    entry.removed = true;
    this.count--;
    return true;
  }

  /** The next value by class (with aging), tenant turn and arrival; undefined when empty. */
  shift(): T | undefined {
    const now = this.now();
    let best: { cls: number; tenants: Map<string, Entry<T>[]>; rank: number } | undefined;
    for (const [cls, tenants] of this.classes) {
      let oldest = Number.POSITIVE_INFINITY;
      for (const line of tenants.values()) oldest = Math.min(oldest, line[0]!.arrivedAt);
      if (oldest === Number.POSITIVE_INFINITY) continue;
      const rank = cls + (now - oldest) / this.agingMs;
      if (best === undefined || rank > best.rank || (rank === best.rank && cls > best.cls)) {
        best = { cls, tenants, rank };
      }
    }
    if (best === undefined) return undefined;
    const [tenant, line] = best.tenants.entries().next().value as [string, Entry<T>[]];
    const entry = line.shift()!;
    // The tenant just served goes to the back of its class's turn order.
    best.tenants.delete(tenant);
    if (line.length > 0) best.tenants.set(tenant, line);
    entry.removed = true;
    this.count--;
    return entry.value;
  }

  /** Empties the queue, returning every value in no particular order. */
  drain(): T[] {
    const out: T[] = [];
    for (const tenants of this.classes.values()) {
      for (const line of tenants.values()) for (const e of line) out.push(e.value);
    }
    this.classes.clear();
    this.count = 0;
    return out;
  }
}
