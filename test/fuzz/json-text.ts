/**
 * JSON text that `JSON.stringify` cannot write: numbers past double range, nesting deeper than any recursive
 * serializer survives. A generated body is a tree of plain values with `RawJson` leaves, written by {@link toJson}.
 */
export class RawJson {
  constructor(readonly text: string) {}
}

/** An object written member by member: keys may repeat, and may be `__proto__` or `constructor`. */
export class Pairs {
  constructor(readonly pairs: readonly (readonly [string, unknown])[]) {}
}

/** `depth` levels of nested arrays (or objects under key "a"), built without recursion. */
export function nested(depth: number, kind: "array" | "object"): RawJson {
  return kind === "array"
    ? new RawJson("[".repeat(depth) + "1" + "]".repeat(depth))
    : new RawJson('{"a":'.repeat(depth) + "1" + "}".repeat(depth));
}

/** Writes `value` as JSON text, `RawJson` leaves verbatim; `undefined` object members are left out. */
export function toJson(value: unknown): string {
  if (value instanceof RawJson) return value.text;
  if (value instanceof Pairs) return `{${value.pairs.map(([k, v]) => `${JSON.stringify(k)}:${toJson(v)}`).join(",")}}`;
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? "null" : toJson(v))).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const members = Object.entries(value)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${JSON.stringify(k)}:${toJson(v)}`);
    return `{${members.join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}
