/**
 * A steady open-loop load through the gateway's HTTP API, and the tally of what each client saw. Requests start at a
 * fixed rate whatever the mesh does (a dead gateway does not slow the senders down), each with its own deadline, so
 * a request that hangs is counted instead of stalling the load.
 */

/** The four kinds of request, sent in turn. */
export type Kind = "remote" | "remote-stream" | "local" | "local-stream";
export const KINDS: readonly Kind[] = ["remote", "remote-stream", "local", "local-stream"];

/** What one client saw. */
export interface Outcome {
  seq: number;
  kind: Kind;
  /** The unique first word of the prompt: how the fake upstream's record of the request is found. */
  marker: string;
  startedAt: number;
  endedAt: number;
  /**
   * `ok`: a 200 with a whole answer (a stream ending `data: [DONE]` without an error event); `error`: an HTTP error
   * or a stream that ended with an error; `connection`: no response or a cut body; `hang`: the deadline passed.
   */
  result: "ok" | "error" | "connection" | "hang";
  status?: number;
  /** The gateway's request id (`x-request-id`), when a response head arrived. */
  requestId?: string;
  /** The usage the answer reported (streams ask for it with `stream_options.include_usage`). */
  usage?: { input: number; output: number };
  detail?: string;
}

export interface SteadyLoadOptions {
  gateway: string;
  apiKey: string;
  /** Requests started per second. */
  rps: number;
  /** Each request's client-side deadline; past it the request is aborted and counted as a hang. */
  deadlineMs: number;
  /** Words of every remote prompt (the fake upstream echoes it: this many tokens in and out). */
  words: number;
  /** `max_tokens` of local requests (the test models never stop on their own). */
  localMaxTokens: number;
  remoteModel?: string;
  localModel?: string;
}

const WORDS = "apple beach cloud delta eagle frost grape house ivory jelly knife lemon mango noble ocean piano".split(
  " ",
);

/** Runs the load from `start()` until `stop()`; `outcomes` fills as requests end. */
export class SteadyLoad {
  readonly outcomes: Outcome[] = [];
  private sent = 0;
  private timer: NodeJS.Timeout | undefined;
  private startedAt = 0;
  private readonly inFlight = new Set<Promise<void>>();

  constructor(private readonly options: SteadyLoadOptions) {}

  /** Requests started so far. */
  get started(): number {
    return this.sent;
  }

  start(): void {
    this.startedAt = performance.now();
    // The number due is computed from the elapsed time, so timer jitter never changes the rate.
    this.timer = setInterval(() => {
      const due = Math.floor(((performance.now() - this.startedAt) * this.options.rps) / 1000);
      while (this.sent < due) this.send(this.sent++);
    }, 5);
  }

  /** Stops starting requests and resolves once every request in flight has ended (each is bounded by its deadline). */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    while (this.inFlight.size > 0) await Promise.all(this.inFlight);
  }

  /** Outcomes of requests started at or after `since` (performance.now() time). */
  since(since: number): Outcome[] {
    return this.outcomes.filter((o) => o.startedAt >= since);
  }

  private send(seq: number): void {
    const p = this.run(seq).then((o) => {
      this.outcomes.push(o);
    });
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }

  private async run(seq: number): Promise<Outcome> {
    const { gateway, apiKey, deadlineMs, words, localMaxTokens } = this.options;
    const kind = KINDS[seq % KINDS.length]!;
    const remote = kind.startsWith("remote");
    const stream = kind.endsWith("stream");
    const marker = `q${seq}`;
    const prompt = [marker, ...Array.from({ length: words - 1 }, (_, i) => WORDS[i % WORDS.length])].join(" ");
    const body = {
      model: remote ? (this.options.remoteModel ?? "gpt-fake") : (this.options.localModel ?? "local-tiny"),
      messages: [{ role: "user", content: prompt }],
      ...(remote ? {} : { max_tokens: localMaxTokens }),
      ...(stream ? { stream: true, stream_options: { include_usage: true } } : {}),
    };
    const startedAt = performance.now();
    const out: Outcome = { seq, kind, marker, startedAt, endedAt: startedAt, result: "connection" };
    const signal = AbortSignal.timeout(deadlineMs);
    try {
      const res = await fetch(`${gateway}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
        body: JSON.stringify(body),
        signal,
      });
      out.status = res.status;
      out.requestId = res.headers.get("x-request-id") ?? undefined;
      const text = await res.text();
      if (res.status !== 200) {
        out.result = "error";
        out.detail = text.slice(0, 200);
      } else if (stream) {
        readStream(text, out);
      } else {
        const json = JSON.parse(text) as { usage?: { prompt_tokens: number; completion_tokens: number } };
        if (json.usage) out.usage = { input: json.usage.prompt_tokens, output: json.usage.completion_tokens };
        out.result = "ok";
      }
    } catch (err) {
      const e = err as Error;
      out.result = signal.aborted ? "hang" : "connection";
      out.detail = `${e.name}: ${e.message}${e.cause ? ` (${(e.cause as Error).message})` : ""}`;
    }
    out.endedAt = performance.now();
    return out;
  }
}

/** A stream is whole when it ends `data: [DONE]` with no error event on the way. */
function readStream(text: string, out: Outcome): void {
  let done = false;
  for (const line of text.split("\n")) {
    if (!line.startsWith("data: ")) continue;
    const data = line.slice(6).trim();
    if (data === "[DONE]") {
      done = true;
      continue;
    }
    const ev = JSON.parse(data) as {
      error?: { message: string };
      usage?: { prompt_tokens: number; completion_tokens: number } | null;
    };
    if (ev.error) {
      out.result = "error";
      out.detail = ev.error.message;
      return;
    }
    if (ev.usage) out.usage = { input: ev.usage.prompt_tokens, output: ev.usage.completion_tokens };
  }
  out.result = done ? "ok" : "connection";
  if (!done) out.detail = "stream ended without [DONE]";
}
