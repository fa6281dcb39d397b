/**
 * The CLI's errors. They carry the process exit code, so the one place that catches them (`run`) needs no
 * mapping. Not AppError: importing @tokenmesh/runtime would load gRPC and OpenTelemetry (~0.8 s) on every
 * invocation, and a CLI error is only ever printed, never sent over the wire.
 */

/** Something went wrong that the user should read; exits 1. */
export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, options: { exitCode?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "CliError";
    this.exitCode = options.exitCode ?? 1;
  }
}

/** The command line is wrong (unknown command or option, missing or bad value); exits 2 after the help text. */
export class UsageError extends CliError {
  /** The command whose help to print (`["keys", "create"]`), or empty for the top-level help. */
  readonly command: readonly string[];
  constructor(message: string, command: readonly string[] = []) {
    super(message, { exitCode: 2 });
    this.name = "UsageError";
    this.command = command;
  }
}

/** The admin API answered with an error status; `message` is the OpenAI error body's message. Exits 1. */
export class ApiError extends CliError {
  readonly status: number;
  /** The OpenAI error `code` (e.g. `invalid_api_key`), when the body had one. */
  readonly code: string | undefined;
  readonly requestId: string | undefined;
  constructor(message: string, status: number, code?: string, requestId?: string) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.requestId = requestId;
  }
}
