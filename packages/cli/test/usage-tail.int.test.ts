import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { EventPublisher, encodeEvent, ensureStreams, UsageRecordedEvent } from "@tokenmesh/events";
import { UsageRecorded } from "@tokenmesh/proto/events/v1/events";
import { createLogger } from "@tokenmesh/telemetry";
import { freePort, type ServiceProcess, spawnService, startNatsServer, uniqueName, waitFor } from "@tokenmesh/testing";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { CLI, requireBuiltCli, runCli } from "./cli-process.js";

function usage(requestId: string, overrides: Partial<UsageRecorded> = {}): UsageRecorded {
  return UsageRecorded.fromPartial({
    requestId,
    timestamp: new Date().toISOString(),
    keyId: "k_other",
    team: "team-a",
    user: "",
    modelRequested: "tiny",
    model: "local-tiny",
    provider: "local",
    inputTokens: 12,
    outputTokens: 7,
    cachedTokens: 3,
    cacheHit: false,
    status: "ok",
    errorCode: "",
    latencyMs: 150,
    ttftMs: 40,
    traceId: "",
    endpoint: "chat",
    stream: true,
    reservationId: "",
    ...overrides,
  });
}

/** `tokenmesh usage tail <args>` as a process, with its stdout collected apart from stderr. */
async function startTail(natsUrl: string, args: string[]): Promise<{ proc: ServiceProcess; stdout: () => string }> {
  const proc = await spawnService({
    name: "tokenmesh usage tail",
    cmd: process.execPath,
    args: [CLI, "usage", "tail", ...args],
    env: { NATS_URL: natsUrl },
    // Printed to stderr once the subscription exists on the server: anything published after it is shown.
    readyPattern: "tokenmesh: listening on",
    readyTimeoutMs: 20_000,
  });
  let out = "";
  proc.child.stdout?.on("data", (chunk: Buffer) => {
    out += chunk.toString("utf8");
  });
  return { proc, stdout: () => out };
}

/** Resolves with stdout once a line containing `requestId` has arrived. */
async function lineFor(stdout: () => string, requestId: string): Promise<string> {
  return waitFor(
    () =>
      stdout()
        .split("\n")
        .find((l) => l.includes(requestId)) ?? false,
    {
      timeoutMs: 10_000,
      description: `a line for ${requestId}`,
    },
  ) as Promise<string>;
}

describe("tokenmesh usage tail", () => {
  let nc: NatsConnection;
  let publisher: EventPublisher;
  let natsUrl: string;
  const running: ServiceProcess[] = [];

  beforeAll(async () => {
    requireBuiltCli();
    natsUrl = inject("natsUrl");
    nc = await connect({ servers: natsUrl });
    await ensureStreams(await jetstreamManager(nc), ["LLM_USAGE"]);
    publisher = new EventPublisher({
      js: jetstream(nc),
      logger: createLogger({ service: "cli-test", level: "silent" }),
      name: "cli-test",
    });
  });
  afterAll(async () => {
    await Promise.all(running.map((p) => p.stop()));
    await publisher?.flush(5_000).catch(() => undefined);
    await nc?.drain();
  });

  it("prints each matching request as it happens, and exits 0 on SIGTERM", async () => {
    // The stream is shared with other tests: a unique key keeps this tail to our events.
    const key = uniqueName("k");
    const [first, second, other] = [uniqueName("req"), uniqueName("req"), uniqueName("req")];
    const tail = await startTail(natsUrl, ["--key", key]);
    running.push(tail.proc);

    await publisher.publish(UsageRecordedEvent, usage(other), { msgId: other });
    await publisher.publish(UsageRecordedEvent, usage(first, { keyId: key, team: "research" }), { msgId: first });
    const firstLine = await lineFor(tail.stdout, first);
    expect(firstLine).toMatch(
      new RegExp(
        `^\\d\\d:\\d\\d:\\d\\d\\.\\d{3} ${first} key=${key} team=research tiny→local-tiny ok in=12 out=7 cached=3 latency=150ms ttft=40ms$`,
      ),
    );

    // Published only after the first line arrived: the tail streams, it does not print at exit.
    await publisher.publish(
      UsageRecordedEvent,
      usage(second, { keyId: key, status: "error", errorCode: "UNAVAILABLE", model: "", ttftMs: 0 }),
      { msgId: second },
    );
    expect(await lineFor(tail.stdout, second)).toContain(`${second} key=${key} team=team-a tiny→- error:UNAVAILABLE`);

    const lines = tail.stdout().trimEnd().split("\n");
    expect(lines).toHaveLength(2);
    expect(tail.stdout()).not.toContain(other);

    expect(await tail.proc.stop()).toEqual({ code: 0, signal: null });
  });

  it("prints canonical JSON lines with --json, filtered by team and model", async () => {
    const team = uniqueName("team");
    const [hit, wrongModel] = [uniqueName("req"), uniqueName("req")];
    const tail = await startTail(natsUrl, ["--team", team, "--model", "gpt-4o-mini", "--json"]);
    running.push(tail.proc);

    await publisher.publish(UsageRecordedEvent, usage(wrongModel, { team }), { msgId: wrongModel });
    // The model filter matches the requested model too (an alias, or a fallback served the request).
    await publisher.publish(
      UsageRecordedEvent,
      usage(hit, { team, modelRequested: "gpt-4o-mini", model: "claude-haiku" }),
      {
        msgId: hit,
      },
    );
    const line = await lineFor(tail.stdout, hit);
    expect(JSON.parse(line)).toMatchObject({
      requestId: hit,
      team,
      modelRequested: "gpt-4o-mini",
      model: "claude-haiku",
      inputTokens: 12,
    });
    expect(tail.stdout()).not.toContain(wrongModel);
    expect(await tail.proc.stop()).toEqual({ code: 0, signal: null });
  });

  it("falls back to a core subscription when the LLM_USAGE stream does not exist", async () => {
    const bare = await startNatsServer();
    try {
      const tail = await startTail(bare.url, []);
      running.push(tail.proc);
      expect(tail.proc.output()).toContain("core subscription");
      const id = uniqueName("req");
      const nc2 = await connect({ servers: bare.url });
      try {
        nc2.publish(UsageRecordedEvent.subject, encodeEvent(UsageRecordedEvent, usage(id)));
        await nc2.flush();
        expect(await lineFor(tail.stdout, id)).toContain(`${id} key=k_other`);
      } finally {
        await nc2.close();
      }
      expect(await tail.proc.stop()).toEqual({ code: 0, signal: null });
    } finally {
      await bare.stop();
    }
  });

  it("keeps following across a NATS restart without losing or repeating events", async () => {
    const server = await startNatsServer();
    let nc2: NatsConnection | undefined;
    try {
      const setup = await connect({ servers: server.url });
      await ensureStreams(await jetstreamManager(setup), ["LLM_USAGE"]);
      await setup.close();
      const tail = await startTail(server.url, []);
      running.push(tail.proc);
      expect(tail.proc.output()).toContain("ordered consumer");

      nc2 = await connect({ servers: server.url, maxReconnectAttempts: -1, reconnectTimeWait: 50 });
      const js = jetstream(nc2);
      const [before, during] = [uniqueName("req"), uniqueName("req")];
      await js.publish(UsageRecordedEvent.subject, encodeEvent(UsageRecordedEvent, usage(before)), { msgID: before });
      await lineFor(tail.stdout, before);

      await server.restart();
      // Stored while the tail may still be reconnecting: the recreated consumer starts after the last event shown.
      await waitFor(
        async () => {
          await js.publish(UsageRecordedEvent.subject, encodeEvent(UsageRecordedEvent, usage(during)), {
            msgID: during,
          });
          return true;
        },
        { timeoutMs: 15_000, description: "a publish after the restart" },
      );
      await lineFor(tail.stdout, during);
      const lines = tail.stdout().trimEnd().split("\n");
      expect(lines.filter((l) => l.includes(before))).toHaveLength(1);
      expect(lines.filter((l) => l.includes(during))).toHaveLength(1);
      expect(await tail.proc.stop()).toEqual({ code: 0, signal: null });
    } finally {
      await nc2?.close();
      await server.stop();
    }
  });

  it("exits 1 naming the server when NATS cannot be reached", async () => {
    const url = `nats://127.0.0.1:${await freePort()}`;
    const r = await runCli(["usage", "tail"], { env: { NATS_URL: url } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^tokenmesh: cannot connect to NATS at ${url}`));
  });
});
