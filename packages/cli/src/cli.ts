import { AdminClient } from "./admin.client.js";
import { helpText, type Invocation, parseCommandLine } from "./args.js";
import { type AdminCommand, runAdminCommand } from "./commands/admin.commands.js";
import { type JobsCommand, runJobsCommand } from "./commands/jobs.commands.js";
import { usageTail } from "./commands/usage-tail.js";
import { type CliConfig, loadConfig, type RawEnv } from "./config.js";
import { ApiError, CliError, UsageError } from "./errors.js";
import type { Output } from "./output.js";

export { helpText, parseCommandLine } from "./args.js";
export { ApiError, CliError, UsageError } from "./errors.js";
export type { Output } from "./output.js";

/** What `run` reads and writes instead of the process's own, so it can run in-process in tests. */
export interface CliIo {
  stdout: Output;
  stderr: Output;
  /** Aborted on Ctrl-C / SIGTERM: ends `usage tail` cleanly. */
  signal?: AbortSignal;
  /** Default: the process's environment. */
  env?: RawEnv;
  /** Default: the process's working directory (where the admin-key file search starts). */
  cwd?: string;
  /** Reads all of standard input (`jobs submit --body -`). */
  stdin?: () => Promise<string>;
}

/**
 * Runs one `tokenmesh` command line and resolves with the exit code: 0 on success, 1 when the command failed
 * (an HTTP error prints the OpenAI error body's message), 2 for a bad command line (after the help text). Never
 * throws and never exits the process.
 */
export async function run(argv: readonly string[], io: CliIo): Promise<number> {
  try {
    const invocation = parseCommandLine(argv);
    await execute(invocation, io);
    return 0;
  } catch (err) {
    return report(err, io.stderr);
  }
}

async function execute({ command, url, json }: Invocation, io: CliIo): Promise<void> {
  if (command.name === "help") {
    io.stdout.write(helpText(command.topic));
    return;
  }
  const config = loadConfig({ url }, io.env, io.cwd);
  if (command.name === "usage tail") {
    await usageTail({
      natsUrl: config.natsUrl,
      filter: command.filter,
      json,
      out: io.stdout,
      err: io.stderr,
      signal: io.signal ?? new AbortController().signal,
    });
    return;
  }
  if (command.name.startsWith("jobs ")) {
    if (config.apiKey === undefined) throw new CliError("no key: set TOKENMESH_API_KEY to a virtual key");
    await runJobsCommand(command as JobsCommand, {
      gatewayUrl: config.gatewayUrl,
      apiKey: config.apiKey,
      out: io.stdout,
      err: io.stderr,
      json,
      signal: io.signal,
      stdin: io.stdin,
    });
    return;
  }
  await runAdminCommand(adminClient(config, io.signal), command as AdminCommand, io.stdout, json);
}

function adminClient(config: CliConfig, signal: AbortSignal | undefined): AdminClient {
  if (config.adminKey === undefined) {
    throw new CliError(
      "no admin key: set TOKENMESH_ADMIN_KEY, or run from the directory where `npm start` wrote .tokenmesh/admin-key",
    );
  }
  return new AdminClient(config.gatewayUrl, config.adminKey, { signal });
}

function report(err: unknown, stderr: Output): number {
  if (err instanceof UsageError) {
    stderr.write(`tokenmesh: ${err.message}\n\n${helpText(err.command)}`);
    return err.exitCode;
  }
  if (err instanceof ApiError) {
    const details = [
      `HTTP ${err.status}`,
      ...(err.code ? [err.code] : []),
      ...(err.requestId ? [`request ${err.requestId}`] : []),
    ];
    stderr.write(`tokenmesh: ${err.message} (${details.join(", ")})\n`);
    return err.exitCode;
  }
  if (err instanceof CliError) {
    stderr.write(`tokenmesh: ${err.message}\n`);
    return err.exitCode;
  }
  stderr.write(`tokenmesh: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  return 1;
}
