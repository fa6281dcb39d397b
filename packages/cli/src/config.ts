import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { CliError, UsageError } from "./errors.js";

/**
 * The only reader of `process.env` in the CLI: the gateway URL, the admin key and the NATS URL are resolved here,
 * so commands get plain values and tests can pass a fake environment and working directory.
 */

/** A raw environment, shaped like `process.env`. */
export type RawEnv = Readonly<Record<string, string | undefined>>;

/** Where the admin key was found, for messages. */
export type AdminKeySource = "TOKENMESH_ADMIN_KEY" | { file: string };

export interface CliConfig {
  /** The gateway's base URL, without a trailing slash. */
  readonly gatewayUrl: string;
  /** NATS servers (comma-separated), as `NATS_URL`. */
  readonly natsUrl: string;
  /** The admin key, or undefined when neither the variable nor a `.tokenmesh/admin-key` file was found. */
  readonly adminKey: string | undefined;
  readonly adminKeySource: AdminKeySource | undefined;
  /** The key `jobs` commands run as: `TOKENMESH_API_KEY` (a virtual key or JWT), else the admin key. */
  readonly apiKey: string | undefined;
}

export const DEFAULT_GATEWAY_URL = "http://127.0.0.1:8080";
export const DEFAULT_NATS_URL = "nats://127.0.0.1:4222";
/** Where `npm start` saves a generated admin key, relative to the repository root. */
export const ADMIN_KEY_FILE = join(".tokenmesh", "admin-key");

/**
 * Resolves the CLI's settings. The gateway URL is `--url`, else `TOKENMESH_URL`, else {@link DEFAULT_GATEWAY_URL};
 * the admin key is `TOKENMESH_ADMIN_KEY`, else the first `.tokenmesh/admin-key` in `cwd` or one of its parents.
 * Throws UsageError for a bad `--url` and CliError for a bad `TOKENMESH_URL`.
 */
export function loadConfig(
  flags: { url?: string | undefined },
  env: RawEnv = process.env,
  cwd = process.cwd(),
): CliConfig {
  const gatewayUrl =
    flags.url !== undefined
      ? httpUrl(flags.url, (msg) => new UsageError(`--url: ${msg}`))
      : nonEmpty(env.TOKENMESH_URL) !== undefined
        ? httpUrl(env.TOKENMESH_URL!, (msg) => new CliError(`TOKENMESH_URL: ${msg}`))
        : DEFAULT_GATEWAY_URL;
  const fromEnv = nonEmpty(env.TOKENMESH_ADMIN_KEY);
  const fromFile = fromEnv === undefined ? findAdminKeyFile(cwd) : undefined;
  return {
    gatewayUrl,
    natsUrl: nonEmpty(env.NATS_URL) ?? DEFAULT_NATS_URL,
    adminKey: fromEnv ?? fromFile?.key,
    adminKeySource: fromEnv !== undefined ? "TOKENMESH_ADMIN_KEY" : fromFile && { file: fromFile.file },
    apiKey: nonEmpty(env.TOKENMESH_API_KEY) ?? fromEnv ?? fromFile?.key,
  };
}

/**
 * Looks for `.tokenmesh/admin-key` in `dir` and each parent up to the filesystem root; returns the first non-empty
 * one (trimmed) and its path. Unreadable files are skipped like missing ones.
 */
export function findAdminKeyFile(dir: string): { key: string; file: string } | undefined {
  for (let current = dir; ; current = dirname(current)) {
    const file = join(current, ADMIN_KEY_FILE);
    try {
      const key = readFileSync(file, "utf8").trim();
      if (key !== "") return { key, file };
    } catch {
      // Missing or unreadable: keep walking up.
    }
    if (dirname(current) === current) return undefined;
  }
}

function httpUrl(value: string, fail: (message: string) => Error): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw fail(`expected a URL like ${DEFAULT_GATEWAY_URL} (got ${JSON.stringify(value)})`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw fail(`expected an http or https URL (got ${JSON.stringify(value)})`);
  }
  // Keep a path prefix (a gateway behind a reverse proxy at /tokenmesh) but drop the trailing slash.
  return `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === "" ? undefined : value.trim();
}
