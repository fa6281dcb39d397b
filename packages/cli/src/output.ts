/** Where a command writes: `process.stdout`/`process.stderr`, or a buffer in tests. */
export interface Output {
  write(chunk: string): unknown;
}

/** Prints `value` as indented JSON, for `--json`. */
export function printJson(out: Output, value: unknown): void {
  out.write(`${JSON.stringify(value, null, 2)}\n`);
}
