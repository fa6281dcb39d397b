import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { decodeEvent, Subjects, UsageRecordedEvent, UsageServedBatchEvent } from "@tokenmesh/events";
import type { RecordedRequest } from "@tokenmesh/testing";
import type { Redis } from "ioredis";
import type { Outcome } from "./load.js";

/** Token counts of one request, as billed or as reported. */
export interface Counts {
  input: number;
  output: number;
}

/** One usage report on `LLM_USAGE` (the gateway's `recorded` or the router's `served`). */
export interface Report extends Counts {
  requestId: string;
  keyId: string;
  source: "recorded" | "served";
  /** The report settles a hard-budget hold. */
  reservationId: string;
  /** The catalog model that served ("" when none did). */
  model: string;
}

/** What the ledger and the bus hold at the end of a run. */
export interface LedgerState {
  /** Per request id, what the ledger billed (its `seen:<requestId>` record: the larger of the reports, once). */
  billed: Map<string, Counts>;
  /** Every usage report published, both subjects. */
  reports: Report[];
  /** The key's ledger totals (`GET /admin/usage?keyId=…&period=month`). */
  totals: { requests: number; inputTokens: number; outputTokens: number };
  /** Reservations still held (`res:<id>` records of the ledger), with when each expires (ms since the epoch). */
  reservations: Map<string, number | undefined>;
  /** `GET /admin/budgets` for the key's hard budget. */
  heldUsd: number;
}

/** An upstream exchange of the fake OpenAI upstream, with how it ended. */
export interface UpstreamExchange {
  marker: string;
  stream: boolean;
  closed: "finished" | "aborted" | "cut";
}

/** The verdict: each map has the requests at fault (by request id, or a description), and why. */
export interface Verdict {
  lost: Map<string, string>;
  doubleBilled: Map<string, string>;
  stuckHolds: Map<string, string>;
}

/**
 * Compares what the clients saw (and the upstream served) with the ledger:
 * - usage lost: a request a client saw succeed without a ledger record at least its reported usage; a published
 *   report the ledger billed less than; an answer the upstream finished that no ledger record covers (in full when
 *   not streamed; a streamed one at least its input).
 * - double-billed: a request billed more than the largest of its reports, or more than the usage its client saw
 *   succeed; key totals above the sum of the key's requests billed (a request counted twice).
 * - stuck holds: reservations still held, or held dollars on the budget, once every request has ended.
 */
export function compare(
  outcomes: readonly Outcome[],
  upstream: readonly UpstreamExchange[],
  state: LedgerState,
  remoteWords: number,
  remoteModel: string,
  keyId: string,
  /** Names the part of the run a hold that expires at this time (ms since the epoch) was taken in. */
  phaseOf: (expiresAt: number) => string = () => "",
): Verdict {
  const lost = new Map<string, string>();
  const doubleBilled = new Map<string, string>();
  const largest = new Map<string, Counts>();
  for (const r of state.reports) {
    const l = largest.get(r.requestId) ?? { input: 0, output: 0 };
    largest.set(r.requestId, { input: Math.max(l.input, r.input), output: Math.max(l.output, r.output) });
  }
  for (const [id, l] of largest) {
    const b = state.billed.get(id);
    if (!b || b.input < l.input || b.output < l.output) lost.set(id, `reported ${fmt(l)}, billed ${fmt(b)}`);
    else if (b.input > l.input || b.output > l.output) doubleBilled.set(id, `reported ${fmt(l)}, billed ${fmt(b)}`);
  }
  for (const id of state.billed.keys()) {
    if (!largest.has(id)) doubleBilled.set(id, "billed without any usage report");
  }
  for (const o of outcomes) {
    if (o.result !== "ok") continue;
    const b = o.requestId ? state.billed.get(o.requestId) : undefined;
    const saw = o.usage ?? { input: 0, output: 0 };
    if (!b || b.input < saw.input || b.output < saw.output)
      lost.set(o.requestId ?? o.marker, `${o.kind}, ok: saw ${fmt(saw)}, billed ${fmt(b)}`);
    else if (o.usage && (b.input > saw.input || b.output > saw.output))
      doubleBilled.set(o.requestId!, `${o.kind}, ok: saw ${fmt(saw)}, billed ${fmt(b)}`);
  }
  // Answers the upstream finished. A non-streamed one is read to its end by the router even when its caller is gone,
  // so it is billed in full; a streamed one stops being read when its caller goes, so it is billed its input and the
  // text that reached the router (which may be less than the upstream wrote before the socket closed).
  const need = (u: UpstreamExchange): Counts => ({ input: remoteWords, output: u.stream ? 0 : remoteWords });
  const byMarker = new Map(outcomes.map((o) => [o.marker, o]));
  const known = new Set(outcomes.flatMap((o) => (o.requestId ? [o.requestId] : [])));
  const unattributed = { whole: 0, streamed: 0 };
  for (const u of upstream) {
    if (u.closed !== "finished") continue;
    const o = byMarker.get(u.marker);
    if (o?.requestId === undefined) {
      // Its client saw no request id (its gateway died): matched by count below.
      if (u.stream) unattributed.streamed++;
      else unattributed.whole++;
      continue;
    }
    const b = state.billed.get(o.requestId);
    const n = need(u);
    if (!b || b.input < n.input || b.output < n.output)
      lost.set(o.requestId, `${u.marker}, finished by the upstream${u.stream ? " (streamed)" : ""}: billed ${fmt(b)}`);
  }
  // Records of the remote model that no client knows: first the whole answers, then any with the input.
  const remote = new Set(state.reports.filter((r) => r.model === remoteModel).map((r) => r.requestId));
  const orphans = [...state.billed].filter(([id]) => !known.has(id) && remote.has(id)).map(([, b]) => b);
  const whole = orphans.filter((b) => b.input >= remoteWords && b.output >= remoteWords).length;
  const partial = orphans.filter((b) => b.input >= remoteWords && b.output < remoteWords).length;
  const missingWhole = Math.max(0, unattributed.whole - whole);
  const missingStreamed = Math.max(0, unattributed.streamed - (whole - unattributed.whole + missingWhole) - partial);
  const counts =
    `the upstream finished ${unattributed.whole} whole and ${unattributed.streamed} streamed answers for clients ` +
    `without a request id; no client knows ${whole} whole and ${partial} partial records`;
  for (let i = 0; i < missingWhole; i++) lost.set(`unattributed-whole-${i}`, counts);
  for (let i = 0; i < missingStreamed; i++) lost.set(`unattributed-streamed-${i}`, counts);
  // The key's totals are the sum of its requests' records, each once.
  const mine = new Set(state.reports.filter((r) => r.keyId === keyId).map((r) => r.requestId));
  let requests = 0;
  const sum = { input: 0, output: 0 };
  for (const id of mine) {
    const b = state.billed.get(id);
    if (!b) continue;
    requests++;
    sum.input += b.input;
    sum.output += b.output;
  }
  const t = state.totals;
  const totals = `key totals ${t.requests} requests ${t.inputTokens}/${t.outputTokens} tokens, its records ${requests} ${sum.input}/${sum.output}`;
  if (t.requests > requests || t.inputTokens > sum.input || t.outputTokens > sum.output)
    doubleBilled.set("key totals", totals);
  if (t.requests < requests || t.inputTokens < sum.input || t.outputTokens < sum.output) lost.set("key totals", totals);
  const stuckHolds = new Map(
    [...state.reservations].map(([id, expiresAt]) => {
      const of = state.reports.filter((r) => r.requestId === id).map((r) => `${r.source} ${fmt(r)}`);
      const taken = expiresAt === undefined ? "" : `taken ${phaseOf(expiresAt)}; `;
      return [id, `still held; ${taken}reports: ${of.join(", ") || "none"}; billed ${fmt(state.billed.get(id))}`];
    }),
  );
  if (state.heldUsd !== 0 && stuckHolds.size === 0) stuckHolds.set("budget", `still holds $${state.heldUsd}`);
  return { lost, doubleBilled, stuckHolds };
}

const fmt = (c: Counts | undefined) => (c ? `${c.input} in/${c.output} out` : "nothing");

/** Reads the ledger's state: its Redis records under `prefix`, the usage stream, the key's totals and budget. */
export async function readLedger(options: {
  redis: Redis;
  prefix: string;
  nc: NatsConnection;
  gateway: string;
  adminKey: string;
  keyId: string;
}): Promise<LedgerState> {
  const { redis, prefix } = options;
  const billed = new Map<string, Counts>();
  const seenKeys = await scan(redis, `${prefix}seen:*`);
  const values = seenKeys.length > 0 ? await redis.mget(seenKeys) : [];
  seenKeys.forEach((k, i) => {
    const m = /^(\d+)\|(\d+)\|/.exec(values[i] ?? "");
    if (m) billed.set(k.slice(`${prefix}seen:`.length), { input: Number(m[1]), output: Number(m[2]) });
  });
  const reservations = new Map<string, number | undefined>();
  for (const k of await scan(redis, `${prefix}res:*`)) reservations.set(k.slice(`${prefix}res:`.length), undefined);
  // Each hold is a member `<reservationId>|<nano>` of a `held:` set, scored by its expiry.
  for (const k of await scan(redis, `${prefix}held:*`)) {
    const flat = await redis.zrange(k, 0, -1, "WITHSCORES");
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const id = flat[i]!.slice(0, flat[i]!.lastIndexOf("|"));
      if (reservations.has(id)) reservations.set(id, Number(flat[i + 1]));
    }
  }

  const reports: Report[] = [];
  const jsm = await jetstreamManager(options.nc);
  const last = (await jsm.streams.info(UsageRecordedEvent.stream)).state.last_seq;
  if (last > 0) {
    const consumer = await jetstream(options.nc).consumers.get(UsageRecordedEvent.stream);
    const messages = await consumer.consume();
    for await (const m of messages) {
      const served = m.subject === Subjects.usageServedBatch;
      const events = served
        ? decodeEvent(UsageServedBatchEvent, m.data).reports
        : [decodeEvent(UsageRecordedEvent, m.data)];
      for (const e of events) {
        reports.push({
          requestId: e.requestId,
          keyId: e.keyId,
          input: e.inputTokens,
          output: e.outputTokens,
          source: served || m.subject === Subjects.usageServed ? "served" : "recorded",
          reservationId: e.reservationId,
          model: e.model,
        });
      }
      if (m.seq >= last) break;
    }
    await messages.close();
  }

  const admin = { authorization: `Bearer ${options.adminKey}` };
  const usage = await fetch(`${options.gateway}/admin/usage?keyId=${options.keyId}&period=month`, { headers: admin });
  if (usage.status !== 200) throw new Error(`GET /admin/usage: ${usage.status} ${await usage.text()}`);
  const totals = (await usage.json()) as LedgerState["totals"];
  const budget = await fetch(`${options.gateway}/admin/budgets?scope=key&id=${options.keyId}&period=day`, {
    headers: admin,
  });
  if (budget.status !== 200) throw new Error(`GET /admin/budgets: ${budget.status} ${await budget.text()}`);
  const { heldUsd } = (await budget.json()) as { heldUsd: number };
  return { billed, reports, totals, reservations, heldUsd };
}

async function scan(redis: Redis, pattern: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = "0";
  do {
    const [next, batch] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== "0");
  return keys;
}

/** The fake upstream's chat exchanges, each with the marker (first word) of its prompt and how it ended. */
export async function upstreamExchanges(requests: readonly RecordedRequest[]): Promise<UpstreamExchange[]> {
  const out: UpstreamExchange[] = [];
  for (const r of requests) {
    if (!r.path.endsWith("/chat/completions")) continue;
    const body = r.body as { messages?: { content?: unknown }[]; stream?: boolean } | undefined;
    const content = body?.messages?.[0]?.content;
    if (typeof content !== "string") continue;
    out.push({ marker: content.split(" ")[0] ?? "", stream: body?.stream === true, closed: await r.closed });
  }
  return out;
}
