import type { BudgetScope, CreateKeyBody, Period, SetBudgetBody, UsageScope } from "./args.js";
import { ApiError, CliError } from "./errors.js";

/** A key as the admin API shows it: never the hash; the secret only in the create answer. */
export interface KeyView {
  id: string;
  name: string;
  team: string;
  user: string;
  models: string[];
  rpm: number;
  tpm: number;
  created_at: string;
}

/** One audited admin change, as `GET /admin/audit` lists it. */
export interface AuditView {
  request_id: string;
  time: string;
  actor: { id: string; name: string; role: string; team: string };
  action: string;
  target: { type: string; id: string };
  team: string;
  summary: Record<string, string>;
  source_ip: string;
}

export interface AuditList {
  data: AuditView[];
  /** Older matching changes were left out. */
  truncated: boolean;
}

export interface CreatedKey extends KeyView {
  /** The secret, shown this once. */
  key: string;
}

export interface Budget {
  scope: BudgetScope;
  id: string;
  period: Period;
  limitUsd: number;
  hard: boolean;
  thresholds: number[];
}

export interface BudgetStatus {
  budget: Budget | null;
  spentUsd: number;
  heldUsd: number;
}

export interface UsageTotals {
  costUsd: number;
  requests: number;
  inputTokens: number;
  outputTokens: number;
  cachedTokens: number;
  errors: number;
}

export interface UsageReport extends UsageTotals {
  byModel: Record<string, UsageTotals>;
}

export interface UsageQuery {
  scope: UsageScope;
  id: string;
  period: Period;
  start?: string;
  end?: string;
}

const USAGE_PARAM: Record<UsageScope, string> = { key: "keyId", team: "team", user: "user", model: "model" };

/**
 * The gateway's admin API over HTTP. Every call sends `Authorization: Bearer <admin key>`; an error status throws
 * ApiError with the OpenAI error body's message, an unreachable gateway throws CliError. Answers are returned as
 * parsed JSON without further validation: `--json` prints them as they came. Aborting `options.signal` (Ctrl-C)
 * cancels the call with a CliError exiting 130; a call gets no answer within `options.timeoutMs` (15 s) fails.
 */
export class AdminClient {
  constructor(
    private readonly baseUrl: string,
    private readonly adminKey: string,
    private readonly options: { timeoutMs?: number; signal?: AbortSignal | undefined } = {},
  ) {}

  createKey(body: CreateKeyBody): Promise<CreatedKey> {
    return this.request("POST", "/admin/keys", body);
  }

  listKeys(): Promise<{ data: KeyView[] }> {
    return this.request("GET", "/admin/keys");
  }

  revokeKey(id: string): Promise<{ id: string; deleted: boolean }> {
    return this.request("DELETE", `/admin/keys/${encodeURIComponent(id)}`);
  }

  setBudget(body: SetBudgetBody): Promise<Budget> {
    return this.request("PUT", "/admin/budgets", body);
  }

  getBudget(scope: BudgetScope, id: string, period: Period): Promise<BudgetStatus> {
    return this.request("GET", `/admin/budgets?${new URLSearchParams({ scope, id, period })}`);
  }

  /** Admin changes, newest first (`GET /admin/audit`). */
  audit(q: { actor?: string; action?: string; since?: string; limit?: number }): Promise<AuditList> {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) if (v !== undefined) params.set(k, String(v));
    return this.request("GET", `/admin/audit?${params}`);
  }

  usage(q: UsageQuery): Promise<UsageReport> {
    const params = new URLSearchParams({ [USAGE_PARAM[q.scope]]: q.id, period: q.period });
    if (q.start !== undefined) params.set("start", q.start);
    if (q.end !== undefined) params.set("end", q.end);
    return this.request("GET", `/admin/usage?${params}`);
  }

  private request<T>(method: string, path: string, body?: unknown): Promise<T> {
    return requestJson<T>(this.baseUrl, this.adminKey, this.options, method, path, body);
  }
}

/**
 * One JSON call to the gateway with `Authorization: Bearer <token>`: an error status throws ApiError with the
 * OpenAI error body's message, an unreachable gateway CliError, an aborted `options.signal` CliError exiting 130.
 */
export async function requestJson<T>(
  baseUrl: string,
  token: string,
  options: { timeoutMs?: number; signal?: AbortSignal | undefined },
  method: string,
  path: string,
  body?: unknown,
): Promise<T> {
  const url = `${baseUrl}${path}`;
  const headers: Record<string, string> = { authorization: `Bearer ${token}`, accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  let response: Response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? null : JSON.stringify(body),
      signal: AbortSignal.any([
        AbortSignal.timeout(options.timeoutMs ?? 15_000),
        ...(options.signal ? [options.signal] : []),
      ]),
    });
  } catch (err) {
    if (options.signal?.aborted) throw new CliError("interrupted", { exitCode: 130, cause: err });
    throw new CliError(`cannot reach the gateway at ${baseUrl}: ${networkReason(err)}`, { cause: err });
  }
  const text = await response.text();
  let parsed: unknown;
  try {
    parsed = text === "" ? undefined : JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  if (!response.ok) throw apiError(response, parsed, text);
  if (parsed === undefined) {
    throw new CliError(`the gateway answered ${method} ${path} with ${response.status} and no JSON body`);
  }
  return parsed as T;
}

/** The OpenAI error body's message (and code / request id) when there is one, else the status and some text. */
function apiError(response: Response, parsed: unknown, text: string): ApiError {
  const error = (parsed as { error?: { message?: unknown; code?: unknown; request_id?: unknown } } | undefined)?.error;
  const requestId = str(error?.request_id) ?? response.headers.get("x-request-id") ?? undefined;
  const message =
    str(error?.message) ??
    `HTTP ${response.status} ${response.statusText}${text.trim() === "" ? "" : `: ${text.trim().slice(0, 200)}`}`;
  return new ApiError(message, response.status, str(error?.code), requestId);
}

function str(v: unknown): string | undefined {
  return typeof v === "string" && v !== "" ? v : undefined;
}

function networkReason(err: unknown): string {
  if (err instanceof Error && err.name === "TimeoutError") return "no answer in time";
  const cause = (err as { cause?: { code?: unknown; message?: unknown } }).cause;
  if (typeof cause?.code === "string") return cause.code;
  if (typeof cause?.message === "string") return cause.message;
  return (err as Error).message;
}
