/**
 * The deepest nesting the gateway accepts in a caller's JSON Schema (tool parameters, a response format's schema).
 * Real schemas stay far below it; much deeper ones overflow the recursive encoders and decoders further down the
 * mesh (`JSON.stringify` in the token estimate, protobuf `Struct` in every service), which would fail the request
 * as an internal error instead of a refusal.
 */
export const MAX_SCHEMA_DEPTH = 64;

/**
 * Whether `value` nests objects and arrays more than `max` levels deep (a scalar is depth 0, `{}` and `[]` depth 1).
 * Iterative, so it cannot overflow the stack itself; stops at the first path past `max`.
 */
export function nestedDeeperThan(value: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== "object") continue;
    if (depth + 1 > max) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, depth + 1]);
  }
  return false;
}
