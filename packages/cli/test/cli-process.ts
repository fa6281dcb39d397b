import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** The built CLI entry (`npm run build -w @tokenmesh/cli`); the tests run it as users do, as a process. */
export const CLI = fileURLToPath(new URL("../dist/main.js", import.meta.url));

/** Fails with a clear message when the CLI has not been built. */
export function requireBuiltCli(): void {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build the CLI first (npm run build -w @tokenmesh/cli)`);
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `tokenmesh <args>` to completion with exactly `env` as its environment (nothing inherited, so a
 * TOKENMESH_ADMIN_KEY of the machine running the tests cannot leak in) and resolves with its exit code and output.
 */
export function runCli(
  args: readonly string[],
  options: { env?: Record<string, string>; cwd?: string } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      process.execPath,
      [CLI, ...args],
      { env: options.env ?? {}, cwd: options.cwd, timeout: 20_000 },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== "number") {
          reject(err);
          return;
        }
        resolve({ code: child.exitCode, stdout, stderr });
      },
    );
  });
}
