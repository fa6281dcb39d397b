import { z } from "zod";

/** The environment is invalid; `problems` names each variable and what is wrong with it. */
export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
    this.problems = problems;
  }
}

/**
 * Validates `env` against a zod object schema whose keys are variable names. Returns the typed config, or throws
 * ConfigError listing every problem at once (never just the first).
 */
export function parseEnv<S extends z.ZodType>(schema: S, env: Record<string, string | undefined>): z.infer<S> {
  const result = schema.safeParse(env);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const name = issue.path.join(".") || "(environment)";
    const value = typeof issue.path[0] === "string" ? env[issue.path[0]] : undefined;
    const shown = value === undefined ? "" : ` (got ${JSON.stringify(isSecretName(name) ? "***" : redactUrl(value))})`;
    return `${name}: ${issue.message}${shown}`;
  });
  throw new ConfigError(problems);
}

/** A URL's password (`postgres://user:secret@host`) never reaches a log. */
function redactUrl(value: string): string {
  return value.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/:@\s]*:)[^@\s]*@/i, "$1***@");
}

function isSecretName(name: string): boolean {
  return /KEY|SECRET|TOKEN|PASSWORD/.test(name);
}

/** Building blocks for service schemas, so every service reads shared variables the same way. */
export const env = {
  port: (fallback: number) => z.coerce.number().int().min(0).max(65535).default(fallback),
  host: (fallback = "0.0.0.0") => z.string().min(1).default(fallback),
  /** A `host:port` peer address. */
  address: (fallback: string) =>
    z
      .string()
      .regex(/^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, "expected host:port")
      .default(fallback),
  url: (fallback: string, protocols: string[]) =>
    z
      .string()
      .default(fallback)
      .refine(
        (v) => {
          try {
            return v.split(",").every((u) => protocols.includes(new URL(u.trim()).protocol));
          } catch {
            return false;
          }
        },
        `expected a URL with scheme ${protocols.join(" or ")}`,
      ),
  logLevel: () => z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  duration: (fallbackMs: number) => z.coerce.number().int().min(0).default(fallbackMs),
  bool: (fallback: boolean) =>
    z
      .enum(["true", "false", "1", "0", "yes", "no"])
      .default(fallback ? "true" : "false")
      .transform((v) => v === "true" || v === "1" || v === "yes"),
};

/** Variables every service reads. */
export const commonEnv = {
  LOG_LEVEL: env.logLevel(),
  /** Shutdown deadline; keep it below Kubernetes' terminationGracePeriodSeconds. */
  SHUTDOWN_TIMEOUT_MS: env.duration(4_000),
  /** The old generation's growth between full GCs, in % of what survived (see heap.ts); 0: V8's own choice. */
  HEAP_GROWING_PERCENT: z.coerce.number().int().min(0).max(1_000).default(200),
};
