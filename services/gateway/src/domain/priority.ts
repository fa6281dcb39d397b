import { AppError } from "@tokenmesh/runtime";

/** The priority classes of admission, lowest first. */
export const PRIORITY_CLASSES = ["batch", "standard", "interactive"] as const;
export type PriorityName = (typeof PRIORITY_CLASSES)[number];

/**
 * The number `RequestContext.priority` carries for a class: higher is served first where a service queues work, and
 * 0 is standard (so internal callers that never set it are neither favoured nor pushed back): batch -1, standard 0,
 * interactive 1.
 */
export function priorityNumber(name: PriorityName): number {
  return PRIORITY_CLASSES.indexOf(name) - 1;
}

/** The class of a `RequestContext.priority` number: below 0 batch, 0 standard, above 0 interactive. */
export function priorityFromNumber(n: number): PriorityName {
  return n < 0 ? "batch" : n > 0 ? "interactive" : "standard";
}

/** The class of the public API's `PriorityClass` enum (1 batch, 2 standard, 3 interactive); undefined for unset. */
export function priorityFromEnum(n: number | undefined): PriorityName | undefined {
  return n !== undefined && n >= 1 && n <= 3 ? PRIORITY_CLASSES[n - 1] : undefined;
}

/** 1 batch, 2 standard, 3 interactive: the class order of the queues (and the public enum's numbers). */
export function priorityRank(name: PriorityName): number {
  return PRIORITY_CLASSES.indexOf(name) + 1;
}

/**
 * Reads the `x-tokenmesh-priority` header (or gRPC metadata): undefined when absent or empty, INVALID_ARGUMENT for
 * anything but interactive, standard or batch (case-insensitive).
 */
export function parsePriority(value: string | string[] | undefined): PriorityName | undefined {
  const v = (Array.isArray(value) ? value[0] : value)?.trim().toLowerCase();
  if (v === undefined || v === "") return undefined;
  if ((PRIORITY_CLASSES as readonly string[]).includes(v)) return v as PriorityName;
  throw new AppError("INVALID_ARGUMENT", `x-tokenmesh-priority must be interactive, standard or batch, not '${v}'`, {
    param: "x-tokenmesh-priority",
    reason: "invalid_value",
  });
}

/**
 * The class a request runs at: the one it states, else its key's default, else the mode's default (interactive for
 * sync and streaming requests, batch for jobs), lowered to the key's cap when the key has one.
 */
export function effectivePriority(
  stated: PriorityName | undefined,
  key: { priority?: PriorityName | undefined; maxPriority?: PriorityName | undefined },
  modeDefault: PriorityName,
): PriorityName {
  const wanted = stated ?? key.priority ?? modeDefault;
  if (key.maxPriority === undefined) return wanted;
  return priorityRank(wanted) > priorityRank(key.maxPriority) ? key.maxPriority : wanted;
}

/** The `x-tokenmesh-priority` header as the RequestContext.priority number a call states (undefined: none stated). */
export function statedPriority(header: string | string[] | undefined): number | undefined {
  const name = parsePriority(header);
  return name === undefined ? undefined : priorityNumber(name);
}
