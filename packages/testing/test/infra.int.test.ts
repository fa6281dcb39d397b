import { existsSync } from "node:fs";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { InfraUnavailableError, provideInfra, startNatsServer, startRedisServer, uniqueName } from "../src/index.js";

/** Calls the JetStream API directly, so these tests need no JetStream client library. */
async function jsApi<T>(nc: NatsConnection, subject: string, body?: unknown): Promise<T> {
  const reply = await nc.request(`$JS.API.${subject}`, body === undefined ? "" : JSON.stringify(body), {
    timeout: 5_000,
  });
  const result = reply.json<T & { error?: { description: string } }>();
  if (result.error !== undefined) throw new Error(`${subject}: ${result.error.description}`);
  return result;
}

interface StreamInfo {
  config: { name: string; storage: string };
  state: { messages: number; last_seq: number };
}

async function createFileStream(nc: NatsConnection, name: string): Promise<StreamInfo> {
  return jsApi<StreamInfo>(nc, `STREAM.CREATE.${name}`, { name, subjects: [`${name}.>`], storage: "file" });
}

/** Publishes through JetStream (a request, so the server's PubAck proves the message was stored). */
async function jsPublish(nc: NatsConnection, subject: string, data: string): Promise<{ stream: string; seq: number }> {
  const ack = await nc.request(subject, data, { timeout: 5_000 });
  return ack.json<{ stream: string; seq: number }>();
}

async function readMessage(nc: NatsConnection, stream: string, seq: number): Promise<string> {
  const { message } = await jsApi<{ message: { data: string } }>(nc, `STREAM.MSG.GET.${stream}`, { seq });
  return Buffer.from(message.data, "base64").toString("utf8");
}

describe("global setup NATS", () => {
  let nc: NatsConnection;
  beforeAll(async () => {
    nc = await connect({ servers: inject("natsUrl") });
  });
  afterAll(async () => {
    await nc?.close();
  });

  it("has JetStream: a stream stores and returns a published message", async () => {
    const stream = uniqueName("infra");
    await createFileStream(nc, stream);
    try {
      const ack = await jsPublish(nc, `${stream}.hello`, "hi there");
      expect(ack).toMatchObject({ stream, seq: 1 });
      expect(await readMessage(nc, stream, 1)).toBe("hi there");
    } finally {
      await jsApi(nc, `STREAM.DELETE.${stream}`);
    }
  });

  it("is not one of the shared servers on the default port", () => {
    expect(new URL(inject("natsUrl")).port).not.toBe("4222");
  });
});

describe("global setup Redis", () => {
  it("answers SET and GET", async () => {
    const redis = new Redis(inject("redisUrl"), { lazyConnect: true, maxRetriesPerRequest: 1 });
    await redis.connect();
    try {
      const key = uniqueName("infra");
      expect(await redis.set(key, "value", "EX", 60)).toBe("OK");
      expect(await redis.get(key)).toBe("value");
      await redis.del(key);
    } finally {
      redis.disconnect();
    }
    expect(new URL(inject("redisUrl")).port).not.toBe("6379");
  });
});

describe("startNatsServer", () => {
  it("keeps file-stream messages across restart() on the same port and store", async () => {
    const server = await startNatsServer();
    const { url, port, storeDir } = server;
    try {
      const stream = uniqueName("outage");
      let nc = await connect({ servers: url, reconnect: false });
      await createFileStream(nc, stream);
      for (const n of [1, 2, 3]) await jsPublish(nc, `${stream}.n`, `message ${n}`);
      await nc.close();

      await server.restart();
      expect(server.url).toBe(url);
      expect(server.port).toBe(port);
      expect(server.storeDir).toBe(storeDir);

      nc = await connect({ servers: url, reconnect: false });
      try {
        const info = await jsApi<StreamInfo>(nc, `STREAM.INFO.${stream}`);
        expect(info.state.messages).toBe(3);
        expect(await readMessage(nc, stream, 2)).toBe("message 2");
      } finally {
        await nc.close();
      }
    } finally {
      await server.stop();
    }
    expect(existsSync(storeDir)).toBe(false);
    await expect(connect({ servers: url, reconnect: false, timeout: 1_000 })).rejects.toThrow();
  });
});

describe("startRedisServer", () => {
  it.each([
    ["aof", "kept"],
    ["none", "lost"],
  ] as const)("restart() on the same port with persistence %s: data %s", async (persistence, fate) => {
    const server = await startRedisServer({ persistence });
    const { url, port } = server;
    const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await redis.connect();
      await redis.set("survivor", "yes");
      await server.restart();
      expect(server.url).toBe(url);
      expect(server.port).toBe(port);
      // ioredis reconnects to the same URL by itself.
      expect(await redis.get("survivor")).toBe(fate === "kept" ? "yes" : null);
    } finally {
      redis.disconnect();
      await server.stop();
    }
  });
});

describe("provideInfra", () => {
  const noDocker = "unix:///nonexistent/docker.sock";

  it("rejects with the install command when no URL, binary or Docker daemon is available", async () => {
    const attempt = provideInfra({ env: { PATH: "/nonexistent", DOCKER_HOST: noDocker }, binDirs: [] });
    await expect(attempt).rejects.toBeInstanceOf(InfraUnavailableError);
    await expect(attempt).rejects.toThrow("apt-get install nats-server redis-server");
  });

  it("names only the server that is missing", async () => {
    const attempt = provideInfra({
      env: { PATH: "/nonexistent", TEST_NATS_URL: inject("natsUrl") },
      binDirs: [],
      containers: false,
    });
    await expect(attempt).rejects.toThrow(
      /but redis-server could not be provided.*apt-get install nats-server redis-server/,
    );
  });

  it("uses TEST_NATS_URL and TEST_REDIS_URL when set, starting nothing", async () => {
    const infra = await provideInfra({
      env: { TEST_NATS_URL: inject("natsUrl"), TEST_REDIS_URL: inject("redisUrl"), PATH: "/nonexistent" },
      binDirs: [],
      containers: false,
    });
    expect(infra).toMatchObject({
      natsUrl: inject("natsUrl"),
      redisUrl: inject("redisUrl"),
      sources: { nats: "env", redis: "env" },
    });
    await infra.stop();
  });

  it("fails instead of falling back when TEST_NATS_URL does not answer", async () => {
    const attempt = provideInfra({ env: { TEST_NATS_URL: "nats://127.0.0.1:1", TEST_REDIS_URL: inject("redisUrl") } });
    await expect(attempt).rejects.toThrow(/TEST_NATS_URL=nats:\/\/127\.0\.0\.1:1 is set but does not answer/);
  });

  it("starts local binaries found outside PATH on free ports, and stops them", async () => {
    const infra = await provideInfra({ env: { PATH: "" }, containers: false });
    expect(infra.sources).toEqual({ nats: "local", redis: "local" });
    const redis = new Redis(infra.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    await redis.connect();
    expect(await redis.ping()).toBe("PONG");
    redis.disconnect();
    await infra.stop();
    await expect(connect({ servers: infra.natsUrl, reconnect: false, timeout: 1_000 })).rejects.toThrow();
  });
});
