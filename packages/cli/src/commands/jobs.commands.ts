import { readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { requestJson } from "../admin.client.js";
import type { Command, JobSubmitBody } from "../args.js";
import { CliError } from "../errors.js";
import { type Output, printJson } from "../output.js";

/** The `jobs` commands. */
export type JobsCommand = Extract<Command, { name: `jobs ${string}` }>;

/** A job as `GET /v1/jobs/{id}` shows it (the fields the CLI reads). */
export interface JobView {
  id: string;
  object: string;
  endpoint: string;
  status: "queued" | "running" | "succeeded" | "failed" | "cancelled";
  created_at: number;
  started_at?: number;
  finished_at?: number;
  request_count?: number;
  result?: unknown;
  error?: { message: string; code?: string };
  metadata?: Record<string, string>;
  callback_status?: string;
}

const FINAL = new Set(["succeeded", "failed", "cancelled"]);
const SPINNER = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
/** How often `watch` polls the job. */
const POLL_MS = 500;

export interface JobsIo {
  gatewayUrl: string;
  apiKey: string;
  out: Output;
  /** Where the live status line goes (redrawn in place when it is a terminal). */
  err: Output & { isTTY?: boolean };
  json: boolean;
  signal: AbortSignal | undefined;
  /** Where `--body -` reads from. */
  stdin?: () => Promise<string>;
}

/**
 * Runs a `jobs` command against the gateway's /v1/jobs API as the caller's key. `watch` (and `submit --wait`)
 * polls the job, drawing one status line on stderr (`⠙ job_… running 4.2s`) until it is final, then prints the
 * result on stdout; a failed or cancelled job exits 1.
 */
export async function runJobsCommand(command: JobsCommand, io: JobsIo): Promise<void> {
  const call = <T>(method: string, path: string, body?: unknown) =>
    requestJson<T>(io.gatewayUrl, io.apiKey, { signal: io.signal }, method, path, body);
  switch (command.name) {
    case "jobs submit": {
      const body = await resolveBody(command.body, io);
      const path = body.requests ? "/v1/jobs/batch" : "/v1/jobs";
      const job = await call<JobView>("POST", path, body);
      if (!command.wait) {
        if (io.json) return printJson(io.out, job);
        io.out.write(`${job.id}\n`);
        return;
      }
      return watch(job.id, call, io);
    }
    case "jobs get": {
      const job = await call<JobView>("GET", `/v1/jobs/${encodeURIComponent(command.id)}`);
      if (io.json) return printJson(io.out, job);
      io.out.write(describe(job));
      if (job.result !== undefined) io.out.write(`${JSON.stringify(job.result, null, 2)}\n`);
      return;
    }
    case "jobs list": {
      const params = new URLSearchParams();
      if (command.limit !== undefined) params.set("limit", String(command.limit));
      if (command.after !== undefined) params.set("after", command.after);
      const list = await call<{ data: JobView[]; has_more: boolean; last_id: string | null }>(
        "GET",
        `/v1/jobs?${params}`,
      );
      if (io.json) return printJson(io.out, list);
      for (const j of list.data) io.out.write(describe(j));
      if (list.data.length === 0) io.out.write("No jobs.\n");
      if (list.has_more) io.out.write(`More: tokenmesh jobs list --after ${list.last_id}\n`);
      return;
    }
    case "jobs cancel": {
      const job = await call<JobView>("DELETE", `/v1/jobs/${encodeURIComponent(command.id)}`);
      if (io.json) return printJson(io.out, job);
      io.out.write(describe(job));
      return;
    }
    case "jobs watch":
      return watch(command.id, call, io);
  }
}

/** One line: id, status, endpoint, age or run time, and the error of a failed job. */
export function describe(job: JobView, nowS = Date.now() / 1000): string {
  const end = job.finished_at ?? nowS;
  const took =
    job.started_at !== undefined ? `ran ${seconds(end - job.started_at)}` : `queued ${seconds(end - job.created_at)}`;
  const batch = job.request_count !== undefined ? ` batch of ${job.request_count}` : "";
  const error = job.error ? `: ${job.error.message}` : "";
  return `${job.id}  ${job.status.padEnd(9)}  ${job.endpoint}${batch}  ${took}${error}\n`;
}

function seconds(s: number): string {
  return `${Math.max(0, s).toFixed(1)}s`;
}

async function watch(id: string, call: <T>(method: string, path: string) => Promise<T>, io: JobsIo): Promise<void> {
  const started = Date.now();
  let frame = 0;
  let lastStatus = "";
  for (;;) {
    const job = await call<JobView>("GET", `/v1/jobs/${encodeURIComponent(id)}`);
    const line = `${SPINNER[frame++ % SPINNER.length]} ${job.id} ${job.status} ${seconds((Date.now() - started) / 1000)}`;
    if (io.err.isTTY) io.err.write(`\r\x1b[2K${line}`);
    else if (job.status !== lastStatus) io.err.write(`${job.id} ${job.status}\n`);
    lastStatus = job.status;
    if (FINAL.has(job.status)) {
      if (io.err.isTTY) io.err.write("\r\x1b[2K");
      if (io.json) printJson(io.out, job);
      else {
        io.err.write(describe(job));
        if (job.result !== undefined) io.out.write(`${JSON.stringify(job.result, null, 2)}\n`);
      }
      if (job.status !== "succeeded") {
        throw new CliError(`job ${job.id} ${job.status}${job.error ? `: ${job.error.message}` : ""}`);
      }
      return;
    }
    try {
      await sleep(POLL_MS, undefined, { signal: io.signal });
    } catch {
      if (io.err.isTTY) io.err.write("\n");
      throw new CliError("interrupted (the job goes on; `tokenmesh jobs cancel` stops it)", { exitCode: 130 });
    }
  }
}

/** Reads a `--body` file (or stdin for `-`): one body, or a JSON array of bodies for a batch. */
async function resolveBody(body: JobSubmitBody, io: JobsIo): Promise<JobSubmitBody> {
  const file = (body.request as { $file?: string } | undefined)?.$file;
  if (file === undefined) return body;
  let text: string;
  try {
    text = file === "-" ? await (io.stdin?.() ?? Promise.resolve("")) : await readFile(file, "utf8");
  } catch (err) {
    throw new CliError(`cannot read ${file}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new CliError(`${file} is not JSON`);
  }
  const { request: _file, ...rest } = body;
  if (Array.isArray(parsed)) return { ...rest, requests: parsed as Record<string, unknown>[] };
  if (parsed === null || typeof parsed !== "object") throw new CliError(`${file} holds no JSON object`);
  return { ...rest, request: parsed as Record<string, unknown> };
}
