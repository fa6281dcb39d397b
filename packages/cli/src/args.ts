import { parseArgs } from "node:util";
import { UsageError } from "./errors.js";

/** A `--key K` style filter on the live usage stream; every given field must match. */
export interface TailFilter {
  key?: string;
  team?: string;
  /** Matches the requested model or the one that served the request. */
  model?: string;
}

export type Period = "day" | "month";
export type UsageScope = "key" | "team" | "user" | "model";
export type BudgetScope = "key" | "team" | "user";

/** `POST /admin/keys` body; fields left out take the gateway's defaults. */
export interface CreateKeyBody {
  name: string;
  team?: string;
  user?: string;
  models?: string[];
  rpm?: number;
  tpm?: number;
}

/** `PUT /admin/budgets` body. */
export interface SetBudgetBody {
  scope: BudgetScope;
  id: string;
  period: Period;
  limitUsd: number;
  hard: boolean;
  thresholds?: number[];
}

/** A command line, validated: what to do, with typed arguments. */
export type Command =
  | { name: "help"; topic: readonly string[] }
  | { name: "usage tail"; filter: TailFilter }
  | { name: "usage report"; scope: UsageScope; id: string; period: Period; start?: string; end?: string }
  | { name: "keys create"; body: CreateKeyBody }
  | { name: "keys list" }
  | { name: "keys revoke"; id: string }
  | { name: "budgets set"; body: SetBudgetBody }
  | { name: "budgets get"; scope: BudgetScope; id: string; period: Period }
  | { name: "audit list"; actor?: string; action?: string; since?: string; limit?: number }
  | { name: "jobs submit"; body: JobSubmitBody; batch: boolean; wait: boolean }
  | { name: "jobs get"; id: string }
  | { name: "jobs list"; limit?: number; after?: string }
  | { name: "jobs cancel"; id: string }
  | { name: "jobs watch"; id: string };

/** `POST /v1/jobs` (or `/v1/jobs/batch` with `requests`) body. */
export interface JobSubmitBody {
  endpoint: "/v1/chat/completions" | "/v1/embeddings";
  request?: Record<string, unknown>;
  requests?: Record<string, unknown>[];
  callback_url?: string;
  metadata?: Record<string, string>;
}

/** A parsed invocation: the command and the options every command takes. */
export interface Invocation {
  command: Command;
  /** `--url`, when given. */
  url: string | undefined;
  /** `--json`: print the raw JSON instead of text. */
  json: boolean;
}

interface OptionSpec {
  type: "string" | "boolean";
  short?: string;
  /** The value's placeholder in help (`--team TEAM`). */
  value?: string;
  description: string;
}

interface CommandSpec {
  group: string;
  name: string;
  summary: string;
  /** The usage line after `tokenmesh <group> <name>`. */
  usage: string;
  /** Positional arguments after the command words. */
  positionals: readonly string[];
  options: Readonly<Record<string, OptionSpec>>;
  details?: string;
}

const GLOBAL_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  url: {
    type: "string",
    value: "URL",
    description: "gateway URL (default: $TOKENMESH_URL, else http://127.0.0.1:8080)",
  },
  json: { type: "boolean", description: "print the raw JSON instead of text" },
  help: { type: "boolean", short: "h", description: "show help" },
};

const periodOption: OptionSpec = { type: "string", value: "day|month", description: "the current UTC day or month" };

const COMMANDS: readonly CommandSpec[] = [
  {
    group: "usage",
    name: "tail",
    summary: "print each request as it happens (from NATS)",
    usage: "[--key K] [--team T] [--model M]",
    positionals: [],
    options: {
      key: { type: "string", value: "K", description: "only this key id" },
      team: { type: "string", value: "T", description: "only this team" },
      model: { type: "string", value: "M", description: "only this model (requested or served)" },
    },
    details:
      "Follows llm.usage.recorded.v1 on NATS_URL (default nats://127.0.0.1:4222) from now on, one line per request:\n" +
      "time, request id, key, team, model requested→served, status, input/output/cached tokens, latency and\n" +
      "time to first token. With --json, one event per line as canonical JSON. Runs until Ctrl-C.",
  },
  {
    group: "usage",
    name: "report",
    summary: "usage and cost of a key, team, user or model, by model",
    usage: "(--key K | --team T | --user U | --model M) [--period day|month] [--start DAY] [--end DAY]",
    positionals: [],
    options: {
      key: { type: "string", value: "K", description: "a key id" },
      team: { type: "string", value: "T", description: "a team" },
      user: { type: "string", value: "U", description: "a user" },
      model: { type: "string", value: "M", description: "a model" },
      period: { ...periodOption, description: "the current UTC day or month (default month)" },
      start: { type: "string", value: "DAY", description: "first day of a range, YYYY-MM-DD (UTC)" },
      end: { type: "string", value: "DAY", description: "last day of a range, YYYY-MM-DD (default today)" },
    },
  },
  {
    group: "keys",
    name: "create",
    summary: "create a virtual key (its secret is shown once)",
    usage: "--name N [--team T] [--user U] [--models a,b] [--rpm N] [--tpm N]",
    positionals: [],
    options: {
      name: { type: "string", value: "N", description: "a name for the key (required)" },
      team: { type: "string", value: "T", description: "the team it bills to" },
      user: { type: "string", value: "U", description: "the user it bills to" },
      models: { type: "string", value: "a,b", description: "models it may use (default: all)" },
      rpm: { type: "string", value: "N", description: "requests per minute (default 0: unlimited)" },
      tpm: { type: "string", value: "N", description: "tokens per minute (default 0: unlimited)" },
    },
  },
  { group: "keys", name: "list", summary: "list virtual keys", usage: "", positionals: [], options: {} },
  {
    group: "keys",
    name: "revoke",
    summary: "revoke a virtual key (every gateway refuses it within 1 s)",
    usage: "<id>",
    positionals: ["id"],
    options: {},
  },
  {
    group: "budgets",
    name: "set",
    summary: "set the spending budget of a key, team or user",
    usage: "--scope key|team|user --id X --period day|month --limit-usd N [--hard] [--thresholds 0.5,0.8,1]",
    positionals: [],
    options: {
      scope: { type: "string", value: "key|team|user", description: "what the budget applies to" },
      id: { type: "string", value: "X", description: "the key id, team or user" },
      period: periodOption,
      "limit-usd": { type: "string", value: "N", description: "the budget in US dollars" },
      hard: { type: "boolean", description: "refuse requests that would exceed it (default: alert only)" },
      thresholds: { type: "string", value: "a,b", description: "alert at these fractions (default 0.5,0.8,1)" },
    },
  },
  {
    group: "budgets",
    name: "get",
    summary: "show a budget and what was spent this period",
    usage: "--scope key|team|user --id X --period day|month",
    positionals: [],
    options: {
      scope: { type: "string", value: "key|team|user", description: "what the budget applies to" },
      id: { type: "string", value: "X", description: "the key id, team or user" },
      period: periodOption,
    },
  },
  {
    group: "audit",
    name: "list",
    summary: "list admin changes, newest first (who, what, when)",
    usage: "[--actor ID] [--action A] [--since TIME] [--limit N]",
    positionals: [],
    options: {
      actor: { type: "string", value: "ID", description: "only changes by this admin credential (root, adm_…)" },
      action: {
        type: "string",
        value: "A",
        description: "key.create, key.revoke, budget.set, admin.create, admin.revoke or job.cancel",
      },
      since: { type: "string", value: "TIME", description: "only changes at or after this ISO 8601 time" },
      limit: { type: "string", value: "N", description: "at most this many (default 100, at most 1000)" },
    },
  },
  {
    group: "jobs",
    name: "submit",
    summary: "queue an async job (chat or embeddings); --wait follows it to its result",
    usage:
      "(--model M (--prompt TEXT | --input TEXT) | --body FILE) [--endpoint chat|embeddings] [--callback-url URL] [--metadata k=v,…] [--wait]",
    positionals: [],
    options: {
      model: { type: "string", value: "M", description: "the model (with --prompt or --input)" },
      prompt: { type: "string", value: "TEXT", description: "a chat job of one user message" },
      input: { type: "string", value: "TEXT", description: "an embeddings job of one input" },
      body: {
        type: "string",
        value: "FILE",
        description: "the request body as JSON (a JSON array of bodies: a batch job), - for stdin",
      },
      endpoint: { type: "string", value: "chat|embeddings", description: "with --body (default chat)" },
      "callback-url": { type: "string", value: "URL", description: "POST the final job here, signed" },
      metadata: { type: "string", value: "k=v,…", description: "labels returned with the job" },
      wait: { type: "boolean", description: "show a live status line until the job ends, then its result" },
    },
    details:
      "Runs as TOKENMESH_API_KEY (a virtual key), else the admin key. Prints the job id; with --wait, the result\n" +
      "(the body /v1/chat/completions or /v1/embeddings would have returned) once the job succeeds.",
  },
  {
    group: "jobs",
    name: "get",
    summary: "show a job, with its result once finished",
    usage: "<id>",
    positionals: ["id"],
    options: {},
  },
  {
    group: "jobs",
    name: "list",
    summary: "list your recent jobs, newest first",
    usage: "[--limit N] [--after ID]",
    positionals: [],
    options: {
      limit: { type: "string", value: "N", description: "at most this many (default 20, at most 100)" },
      after: { type: "string", value: "ID", description: "the page after this job id" },
    },
  },
  {
    group: "jobs",
    name: "cancel",
    summary: "cancel a job (a queued one never runs, a running one is aborted)",
    usage: "<id>",
    positionals: ["id"],
    options: {},
  },
  {
    group: "jobs",
    name: "watch",
    summary: "follow a job with a live status line until it ends, then print its result",
    usage: "<id>",
    positionals: ["id"],
    options: {},
  },
];

const GROUPS = [...new Set(COMMANDS.map((c) => c.group))];

// Every option any command knows, so a first lenient pass consumes option values (`--url X keys list`) and leaves
// only the command words as positionals.
const ALL_OPTIONS = Object.fromEntries(
  [GLOBAL_OPTIONS, ...COMMANDS.map((c) => c.options)].flatMap((o) =>
    Object.entries(o).map(([k, v]) => [k, v.short === undefined ? { type: v.type } : { type: v.type, short: v.short }]),
  ),
) as Record<string, { type: "string" | "boolean"; short?: string }>;

/**
 * Parses and validates a command line (without `node` and the script). Never exits or prints: throws UsageError
 * naming the problem and the command whose help applies. `--help` anywhere yields the help command for the
 * deepest command named so far.
 */
export function parseCommandLine(argv: readonly string[]): Invocation {
  const loose = parseArgs({ args: [...argv], options: ALL_OPTIONS, strict: false, allowPositionals: true });
  const [group, name] = loose.positionals;
  const wantsHelp = loose.values.help === true;
  const json = loose.values.json === true;
  const url = typeof loose.values.url === "string" ? loose.values.url : undefined;

  if (group === undefined) {
    if (wantsHelp) return { command: { name: "help", topic: [] }, url, json };
    throw new UsageError("missing command");
  }
  if (group === "help") return { command: { name: "help", topic: loose.positionals.slice(1, 3) }, url, json };
  if (!GROUPS.includes(group)) throw new UsageError(`unknown command "${group}"`);
  const spec = COMMANDS.find((c) => c.group === group && c.name === name);
  if (spec === undefined) {
    if (wantsHelp && name === undefined) return { command: { name: "help", topic: [group] }, url, json };
    const names = COMMANDS.filter((c) => c.group === group).map((c) => c.name);
    throw new UsageError(
      name === undefined ? `"${group}" needs one of: ${names.join(", ")}` : `unknown command "${group} ${name}"`,
      [group],
    );
  }
  const topic = [group, spec.name];

  let parsed: { values: Record<string, string | boolean | undefined>; positionals: string[] };
  try {
    parsed = parseArgs({
      args: [...argv],
      options: toParseArgsOptions({ ...GLOBAL_OPTIONS, ...spec.options }),
      strict: true,
      allowPositionals: true,
    });
  } catch (err) {
    throw new UsageError((err as Error).message, topic);
  }
  if (parsed.values.help === true) return { command: { name: "help", topic }, url, json };

  const extra = parsed.positionals.slice(2);
  if (extra.length < spec.positionals.length)
    throw new UsageError(`missing <${spec.positionals[extra.length]}>`, topic);
  if (extra.length > spec.positionals.length)
    throw new UsageError(`unexpected argument "${extra[spec.positionals.length]}"`, topic);

  const v = new Values(parsed.values, topic);
  return { command: buildCommand(`${group} ${spec.name}`, v, extra), url, json };
}

function buildCommand(name: string, v: Values, positionals: string[]): Command {
  switch (name) {
    case "usage tail":
      return {
        name,
        filter: dropUndefined({ key: v.string("key"), team: v.string("team"), model: v.string("model") }),
      };
    case "usage report": {
      const given = (["key", "team", "user", "model"] as const).filter((s) => v.string(s) !== undefined);
      if (given.length !== 1) throw v.error("give exactly one of --key, --team, --user, --model");
      const scope = given[0]!;
      return {
        name,
        scope,
        id: v.string(scope)!,
        period: v.oneOf("period", ["day", "month"]) ?? "month",
        ...dropUndefined({ start: v.day("start"), end: v.day("end") }),
      };
    }
    case "keys create":
      return {
        name,
        body: {
          name: v.required("name"),
          ...dropUndefined({
            team: v.string("team"),
            user: v.string("user"),
            models: v.list("models"),
            rpm: v.count("rpm"),
            tpm: v.count("tpm"),
          }),
        },
      };
    case "keys list":
      return { name };
    case "keys revoke": {
      const id = positionals[0]!;
      if (id.trim() === "") throw v.error("<id> is empty");
      return { name, id };
    }
    case "budgets set": {
      const thresholds = v.list("thresholds")?.map((t) => {
        const n = Number(t);
        if (!Number.isFinite(n) || n <= 0 || n > 10) throw v.error(`--thresholds: "${t}" is not a fraction like 0.8`);
        return n;
      });
      return {
        name,
        body: {
          scope: v.requiredOneOf("scope", ["key", "team", "user"]),
          id: v.required("id"),
          period: v.requiredOneOf("period", ["day", "month"]),
          limitUsd: v.usd("limit-usd"),
          hard: v.flag("hard"),
          ...dropUndefined({ thresholds }),
        },
      };
    }
    case "audit list":
      return {
        name,
        ...dropUndefined({
          actor: v.string("actor"),
          action: v.string("action"),
          since: v.string("since"),
          limit: v.count("limit"),
        }),
      };
    case "jobs submit":
      return { name, body: jobBody(v), batch: false, wait: v.flag("wait") };
    case "jobs get":
    case "jobs cancel":
    case "jobs watch": {
      const id = positionals[0]!;
      if (id.trim() === "") throw v.error("<id> is empty");
      return { name, id };
    }
    case "jobs list":
      return { name, ...dropUndefined({ limit: v.count("limit"), after: v.string("after") }) };
    case "budgets get":
      return {
        name,
        scope: v.requiredOneOf("scope", ["key", "team", "user"]),
        id: v.required("id"),
        period: v.requiredOneOf("period", ["day", "month"]),
      };
    default:
      throw new Error(`no builder for ${name}`);
  }
}

/** The job body of `jobs submit`: from --model with --prompt or --input, or the --body file (read later). */
function jobBody(v: Values): JobSubmitBody {
  const metadata = v.list("metadata")?.map((pair) => {
    const at = pair.indexOf("=");
    if (at <= 0) throw v.error(`--metadata: "${pair}" is not k=v`);
    return [pair.slice(0, at), pair.slice(at + 1)] as const;
  });
  const common = dropUndefined({
    callback_url: v.string("callback-url"),
    metadata: metadata && Object.fromEntries(metadata),
  });
  const file = v.string("body");
  const prompt = v.string("prompt");
  const input = v.string("input");
  if ([file, prompt, input].filter((x) => x !== undefined).length !== 1) {
    throw v.error("give one of --prompt, --input or --body");
  }
  if (file !== undefined) {
    const endpoint = v.oneOf("endpoint", ["chat", "embeddings"]) ?? "chat";
    // The file is read when the command runs; `request` carries its name until then.
    return {
      endpoint: endpoint === "chat" ? "/v1/chat/completions" : "/v1/embeddings",
      request: { $file: file },
      ...common,
    };
  }
  const model = v.required("model");
  if (prompt !== undefined) {
    return {
      endpoint: "/v1/chat/completions",
      request: { model, messages: [{ role: "user", content: prompt }] },
      ...common,
    };
  }
  return { endpoint: "/v1/embeddings", request: { model, input }, ...common };
}

/** Typed, validated access to parsed option values; every failure is a UsageError for `topic`. */
class Values {
  constructor(
    private readonly values: Record<string, string | boolean | undefined>,
    private readonly topic: readonly string[],
  ) {}

  error(message: string): UsageError {
    return new UsageError(message, this.topic);
  }

  string(name: string): string | undefined {
    const value = this.values[name];
    if (typeof value !== "string") return undefined;
    if (value.trim() === "") throw this.error(`--${name} is empty`);
    return value;
  }

  required(name: string): string {
    const value = this.string(name);
    if (value === undefined) throw this.error(`--${name} is required`);
    return value;
  }

  flag(name: string): boolean {
    return this.values[name] === true;
  }

  oneOf<T extends string>(name: string, allowed: readonly T[]): T | undefined {
    const value = this.string(name);
    if (value === undefined) return undefined;
    if (!(allowed as readonly string[]).includes(value)) {
      throw this.error(`--${name} must be ${allowed.join(" or ")} (got "${value}")`);
    }
    return value as T;
  }

  requiredOneOf<T extends string>(name: string, allowed: readonly T[]): T {
    const value = this.oneOf(name, allowed);
    if (value === undefined) throw this.error(`--${name} is required (${allowed.join(" or ")})`);
    return value;
  }

  /** A comma-separated list; blanks between commas are dropped. */
  list(name: string): string[] | undefined {
    const value = this.string(name);
    if (value === undefined) return undefined;
    const items = value
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "");
    if (items.length === 0) throw this.error(`--${name} lists nothing`);
    return items;
  }

  /** A whole number ≥ 0. */
  count(name: string): number | undefined {
    const value = this.string(name);
    if (value === undefined) return undefined;
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(Number(value))) {
      throw this.error(`--${name} must be a whole number ≥ 0 (got "${value}")`);
    }
    return Number(value);
  }

  /** A required amount of US dollars ≥ 0 (`12.5`, `$12.50`). */
  usd(name: string): number {
    const value = this.required(name).trim().replace(/^\$/, "");
    const n = Number(value);
    if (value === "" || !Number.isFinite(n) || n < 0) throw this.error(`--${name} must be an amount ≥ 0 like 12.5`);
    return n;
  }

  /** A UTC day, YYYY-MM-DD. */
  day(name: string): string | undefined {
    const value = this.string(name);
    if (value === undefined) return undefined;
    if (!/^\d{4}-\d{2}-\d{2}$/.test(value) || Number.isNaN(Date.parse(`${value}T00:00:00Z`))) {
      throw this.error(`--${name} must be a day like 2025-01-31 (got "${value}")`);
    }
    return value;
  }
}

function toParseArgsOptions(options: Readonly<Record<string, OptionSpec>>) {
  return Object.fromEntries(
    Object.entries(options).map(([k, v]) => [
      k,
      v.short === undefined ? { type: v.type } : { type: v.type, short: v.short },
    ]),
  ) as Record<string, { type: "string" | "boolean"; short?: string }>;
}

function dropUndefined<T extends Record<string, unknown>>(o: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as {
    [K in keyof T]?: Exclude<T[K], undefined>;
  };
}

/**
 * The help text for `topic`: `[]` lists every command, `[group]` a group's commands, `[group, name]` one
 * command's usage and options.
 */
export function helpText(topic: readonly string[] = []): string {
  const [group, name] = topic;
  const spec = COMMANDS.find((c) => c.group === group && c.name === name);
  if (spec !== undefined) {
    const lines = [
      `Usage: tokenmesh ${spec.group} ${spec.name}${spec.usage === "" ? "" : ` ${spec.usage}`}`,
      "",
      cap(spec.summary) + ".",
    ];
    if (spec.details !== undefined) lines.push("", spec.details);
    if (Object.keys(spec.options).length > 0) lines.push("", "Options:", ...optionLines(spec.options));
    lines.push("", "Global options:", ...optionLines(GLOBAL_OPTIONS));
    return lines.join("\n") + "\n";
  }
  const listed = group !== undefined && GROUPS.includes(group) ? COMMANDS.filter((c) => c.group === group) : COMMANDS;
  const width = Math.max(...listed.map((c) => `${c.group} ${c.name}`.length));
  return [
    group !== undefined && GROUPS.includes(group)
      ? `Usage: tokenmesh ${group} <command> [options]`
      : "Usage: tokenmesh <command> [options]",
    "",
    "Commands:",
    ...listed.map((c) => `  ${`${c.group} ${c.name}`.padEnd(width)}  ${c.summary}`),
    "",
    "Global options:",
    ...optionLines(GLOBAL_OPTIONS),
    "",
    "Environment:",
    "  TOKENMESH_URL        the gateway (default http://127.0.0.1:8080)",
    "  TOKENMESH_ADMIN_KEY  the admin key; else .tokenmesh/admin-key in this directory or a parent (npm start writes it)",
    "  TOKENMESH_API_KEY    the key jobs commands run as (default: the admin key)",
    "  NATS_URL             NATS, for usage tail (default nats://127.0.0.1:4222)",
    "",
    "Run `tokenmesh <command> --help` for a command's options.",
    "",
  ].join("\n");
}

function optionLines(options: Readonly<Record<string, OptionSpec>>): string[] {
  const labels = Object.entries(options).map(([k, o]) => {
    const flag = `${o.short === undefined ? "" : `-${o.short}, `}--${k}${o.value === undefined ? "" : ` ${o.value}`}`;
    return [flag, o.description] as const;
  });
  const width = Math.max(...labels.map(([f]) => f.length));
  return labels.map(([f, d]) => `  ${f.padEnd(width)}  ${d}`);
}

function cap(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}
