import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import {
  type NatsServerHandle,
  type RedisServerHandle,
  startNatsServer,
  startRedisServer,
  waitFor,
} from "@tokenmesh/testing";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADMIN_KEY, createKey, type Mesh, startMesh } from "../e2e/mesh.js";
import { compare, type LedgerState, readLedger, upstreamExchanges } from "./audit.js";
import { KINDS, type Outcome, SteadyLoad } from "./load.js";

// The fault suite (issue 12, item 5): a steady load through the whole mesh while, one at a time, each service is
// killed -9 and restarted, then NATS and then Redis are restarted; afterwards what the clients saw is compared with
// the ledger. Defaults are sized for CI on 2 cores; FAULT_RPS and FAULT_SECONDS scale it up (README.md).

const RPS = Number(process.env.FAULT_RPS ?? 30);
/** How long each fault's phase of the load lasts, at least (a phase also lasts until the mesh serves again). */
const SECONDS = Number(process.env.FAULT_SECONDS ?? 8);
/** A request still unanswered after this long is a hang (every answer here takes well under a second). */
const DEADLINE_MS = Number(process.env.FAULT_DEADLINE_MS ?? 15_000);
/** Words of a remote prompt: the fake upstream echoes it, so a remote answer is this many tokens in and out. */
const REMOTE_WORDS = 12;
const LOCAL_MAX_TOKENS = 4;
const COST_PREFIX = "fault-cost:";
/** cost's default, set here because a stuck hold's time is read from its expiry. */
const RESERVATION_TIMEOUT_MS = 15 * 60_000;
/** How long a fault may take to heal (every service ready, every kind of request answered again). */
const RECOVERY_MS = 30_000;

let nats: NatsServerHandle;
let redis: RedisServerHandle;
let mesh: Mesh;

beforeAll(async () => {
  // Servers of our own, so that they can be restarted. The ledger's Redis needs persistence: the cost service
  // acknowledges a usage event once its Lua script has run, so a Redis that forgot the write would lose the usage.
  [nats, redis] = await Promise.all([startNatsServer(), startRedisServer({ persistence: "aof" })]);
  mesh = await startMesh({
    natsUrl: nats.url,
    redisUrl: redis.url,
    env: { COST_REDIS_PREFIX: COST_PREFIX, COST_RESERVATION_TIMEOUT_MS: String(RESERVATION_TIMEOUT_MS) },
  });
});

afterAll(async () => {
  await mesh?.stop();
  await Promise.all([nats?.stop(), redis?.stop()]);
});

interface Fault {
  name: string;
  /** Causes the fault and returns once the faulty part is running again (it may not be ready yet). */
  run(): Promise<void>;
}

const killAndRestart = (service: string): Fault => ({
  name: `kill -9 ${service}`,
  async run() {
    await mesh.kill(service);
    await mesh.restart(service);
  },
});

interface PhaseResult {
  fault: string;
  survived: boolean;
  /** From the fault to the first answer of every kind started after the mesh was ready again. */
  healedMs: number | undefined;
  why: string[];
  startedAt: number;
  endedAt: number;
  /** Wall-clock times (ms since the epoch) of the phase's start, its fault and its end. */
  startedAtMs: number;
  faultAtMs: number;
  endedAtMs: number;
}

describe("the mesh under faults", () => {
  it(
    "bills every answered request exactly once, leaves no hold, no hang, and every service ready",
    async () => {
      const gateway = mesh.gateways[0]!.http;
      const key = await createKey(gateway, { name: "fault-load" });
      // A hard budget far above what the run spends: every request takes a hold, none is refused.
      const budget = await fetch(`${gateway}/admin/budgets`, {
        method: "PUT",
        headers: { authorization: `Bearer ${ADMIN_KEY}`, "content-type": "application/json" },
        body: JSON.stringify({ scope: "key", id: key.id, period: "day", limitUsd: 1000, hard: true }),
      });
      expect(budget.status).toBe(200);

      const all: Fault[] = [
        killAndRestart("gateway-0"),
        killAndRestart("router"),
        killAndRestart("inference"),
        killAndRestart("guard"),
        killAndRestart("cost"),
        { name: "restart NATS", run: () => nats.restart() },
        { name: "restart Redis", run: () => redis.restart() },
      ];
      // By hand, to chase one fault: FAULT_ONLY picks faults by name, FAULT_REPEAT runs each that many times.
      const only = process.env.FAULT_ONLY?.split(",");
      const faults = all
        .filter((f) => only === undefined || only.some((o) => f.name.includes(o)))
        .flatMap((f) => Array.from({ length: Number(process.env.FAULT_REPEAT ?? 1) }, () => f));
      expect(faults.length).toBeGreaterThan(0);
      const load = new SteadyLoad({
        gateway,
        apiKey: key.key,
        rps: RPS,
        deadlineMs: DEADLINE_MS,
        words: REMOTE_WORDS,
        localMaxTokens: LOCAL_MAX_TOKENS,
      });
      const allReady = async () => {
        for (const origin of mesh.ops.values()) {
          const res = await fetch(`${origin}/readyz`, { signal: AbortSignal.timeout(2_000) }).catch(() => undefined);
          if (res?.status !== 200) return false;
        }
        return true;
      };
      const everyKindAnswered = (since: number) => {
        const ok = new Set(load.since(since).flatMap((o) => (o.result === "ok" ? [o.kind] : [])));
        return KINDS.every((k) => ok.has(k));
      };

      const phases: PhaseResult[] = [];
      load.start();
      try {
        // The mesh answers every kind of request before the first fault.
        await waitFor(() => everyKindAnswered(0), { timeoutMs: RECOVERY_MS, description: "a warm mesh" });
        for (const fault of faults) {
          const phase: PhaseResult = {
            fault: fault.name,
            survived: true,
            healedMs: undefined,
            why: [],
            startedAt: performance.now(),
            endedAt: 0,
            startedAtMs: Date.now(),
            faultAtMs: 0,
            endedAtMs: 0,
          };
          phases.push(phase);
          const sentAtStart = load.started;
          const phaseRequests = Math.round(RPS * SECONDS);
          // A quarter of the phase's load before the fault, the rest during and after it.
          await waitFor(() => load.started >= sentAtStart + phaseRequests / 4, {
            timeoutMs: SECONDS * 1_000,
            intervalMs: 20,
            description: "load before the fault",
          });
          const faultAt = performance.now();
          phase.faultAtMs = Date.now();
          try {
            await fault.run();
            await waitFor(allReady, { timeoutMs: RECOVERY_MS, intervalMs: 100, description: "every service ready" });
            const readyAt = performance.now();
            await waitFor(() => everyKindAnswered(readyAt), {
              timeoutMs: RECOVERY_MS,
              intervalMs: 20,
              description: "every kind of request answered again",
            });
            phase.healedMs = Math.round(performance.now() - faultAt);
          } catch (err) {
            phase.survived = false;
            phase.why.push((err as Error).message);
          }
          await waitFor(() => load.started >= sentAtStart + phaseRequests, {
            timeoutMs: SECONDS * 1_000 + RECOVERY_MS,
            intervalMs: 20,
            description: "the rest of the phase's load",
          });
          phase.endedAt = performance.now();
          phase.endedAtMs = Date.now();
        }
      } finally {
        await load.stop();
      }

      // Hangs are known only once every request has ended (each at its deadline at the latest).
      for (const phase of phases) {
        const hangs = load.outcomes.filter(
          (o) => o.result === "hang" && o.startedAt >= phase.startedAt && o.startedAt < phase.endedAt,
        );
        if (hangs.length > 0) {
          phase.survived = false;
          phase.why.push(`${hangs.length} requests hung past ${DEADLINE_MS} ms`);
        }
      }
      const hangs = load.outcomes.filter((o) => o.result === "hang").length;

      // The ledger is final once no report is waiting anywhere: publishers' outboxes and journals, cost's consumers.
      const nc = await connect({ servers: nats.url });
      const redisClient = new Redis(redis.url);
      try {
        await waitFor(() => quiescent(nc, redisClient), {
          timeoutMs: 60_000,
          intervalMs: 200,
          description: "every usage report consumed",
        });
        const state = await readLedger({
          redis: redisClient,
          prefix: COST_PREFIX,
          nc,
          gateway,
          adminKey: ADMIN_KEY,
          keyId: key.id,
        });
        const verdict = compare(
          load.outcomes,
          await upstreamExchanges(mesh.fakeOpenAI.requests),
          state,
          REMOTE_WORDS,
          "gpt-fake",
          key.id,
          (expiresAt) => {
            const at = expiresAt - RESERVATION_TIMEOUT_MS;
            const p = phases.find((p) => at >= p.startedAtMs && at < p.endedAtMs);
            return p
              ? `during "${p.fault}" (${Math.round(at - p.faultAtMs)} ms after the fault)`
              : "outside the faults";
          },
        );
        const survived = phases.filter((p) => p.survived).length;
        const report = `faults survived ${survived}/${faults.length}, usage lost ${verdict.lost.size}, double-billed ${verdict.doubleBilled.size}, stuck holds ${verdict.stuckHolds.size}`;
        const failed =
          survived < faults.length ||
          verdict.lost.size + verdict.doubleBilled.size + verdict.stuckHolds.size > 0 ||
          state.heldUsd !== 0;
        if (failed || process.env.FAULT_VERBOSE) {
          console.error(details(phases, load.outcomes, verdict, state, hangs));
        }
        console.log(report);
        expect(report).toBe(
          `faults survived ${faults.length}/${faults.length}, usage lost 0, double-billed 0, stuck holds 0`,
        );
        expect(state.heldUsd).toBe(0);
        expect(hangs).toBe(0);
        // The load did run (most requests answered), and its requests took holds that their reports settled.
        expect(load.outcomes.filter((o) => o.result === "ok").length).toBeGreaterThan(load.outcomes.length / 2);
        const settling = state.reports.filter((r) => r.source === "recorded" && r.reservationId !== "").length;
        expect(settling).toBeGreaterThan(load.outcomes.length / 2);
      } finally {
        redisClient.disconnect();
        await nc.close();
      }
    },
    // Seven phases of SECONDS each (longer when a fault heals slowly), the drain and the audit.
    7 * Number(process.env.FAULT_REPEAT ?? 1) * (SECONDS * 1_000 + 2 * RECOVERY_MS) + DEADLINE_MS + 120_000,
  );
});

/** True when no usage report waits in a publisher's outbox or journal, or in cost's consumers. */
async function quiescent(nc: Awaited<ReturnType<typeof connect>>, redisClient: Redis): Promise<boolean> {
  const jsm = await jetstreamManager(nc);
  for (const durable of ["cost-ledger", "cost-ledger-served", "cost-ledger-served-batch"]) {
    const info = await jsm.consumers.info("LLM_USAGE", durable);
    if (info.num_pending > 0 || info.num_ack_pending > 0) return false;
  }
  // A killed gateway's open holds are settled by a live replica's sweep once its heartbeat expires.
  for (const holds of await redisClient.keys("tm:gw:holds:*")) {
    const id = holds.slice("tm:gw:holds:".length);
    if ((await redisClient.exists(`tm:gw:alive:${id}`)) === 0 && (await redisClient.hlen(holds)) > 0) return false;
  }
  for (const journal of await redisClient.keys("tm:outbox:*")) {
    if ((await redisClient.hlen(journal)) > 0) return false;
  }
  for (const name of ["gateway-0", "router"]) {
    const text = await (await fetch(`${mesh.ops.get(name)}/metrics`)).text();
    for (const line of text.split("\n")) {
      if (line.startsWith("tokenmesh_events_outbox_depth") && Number(line.split(" ").at(-1)) > 0) return false;
    }
  }
  return true;
}

function details(
  phases: PhaseResult[],
  outcomes: Outcome[],
  verdict: ReturnType<typeof compare>,
  state: LedgerState,
  hangs: number,
): string {
  const served = state.reports.filter((r) => r.source === "served").length;
  const t = state.totals;
  const lines = [
    `fault suite: ${outcomes.length} requests, ${hangs} hangs; ledger: ${state.billed.size} requests billed, ` +
      `key totals ${t.requests} requests ${t.inputTokens}/${t.outputTokens} tokens; reports: ` +
      `${state.reports.length - served} from gateways, ${served} from the router; heldUsd ${state.heldUsd}`,
  ];
  for (const p of phases) {
    const mine = outcomes.filter((o) => o.startedAt >= p.startedAt && o.startedAt < p.endedAt);
    const count = (r: Outcome["result"]) => mine.filter((o) => o.result === r).length;
    lines.push(
      `  ${p.fault}: ${p.survived ? "survived" : "FAILED"}, healed in ${p.healedMs ?? "-"} ms; ` +
        `${mine.length} requests: ${count("ok")} ok, ${count("error")} error, ${count("connection")} connection, ` +
        `${count("hang")} hang${p.why.length > 0 ? `; ${p.why.join("; ")}` : ""}`,
    );
    const errors = new Map<string, number>();
    for (const o of mine) {
      if (o.result === "ok") continue;
      const k = `${o.result} ${o.status ?? ""} ${(o.detail ?? "").slice(0, 120)}`;
      errors.set(k, (errors.get(k) ?? 0) + 1);
    }
    for (const [k, n] of [...errors].sort((a, b) => b[1] - a[1]).slice(0, 5)) lines.push(`      ${n}× ${k}`);
  }
  for (const [name, m] of [
    ["usage lost", verdict.lost],
    ["double-billed", verdict.doubleBilled],
    ["stuck holds", verdict.stuckHolds],
  ] as const) {
    for (const [id, why] of [...m].slice(0, 10)) lines.push(`  ${name}: ${id}: ${why}`);
    if (m.size > 10) lines.push(`  ${name}: … ${m.size - 10} more`);
  }
  return lines.join("\n");
}
