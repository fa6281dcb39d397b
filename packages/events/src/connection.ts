import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "@tokenmesh/telemetry";

export interface ConnectNatsOptions {
  /** Comma-separated list of servers (NATS_URL). */
  servers: string;
  /** Connection name shown by the server (`tokenmesh-<service>`). */
  name: string;
  logger: Logger;
}

/**
 * Connects to NATS and keeps reconnecting forever: publishers buffer in their outbox and consumers resume when the
 * server is back. The first connect also waits for a server, so a service started before NATS comes up once it does.
 * Status changes are logged.
 */
export async function connectNats(options: ConnectNatsOptions): Promise<NatsConnection> {
  const nc = await connect({
    servers: options.servers.split(",").map((s) => s.trim()),
    name: options.name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    reconnectJitter: 100,
    waitOnFirstConnect: true,
    pingInterval: 10_000,
    // Every request (a JetStream publish is one) would otherwise build two Error objects up front just to have a
    // stack if it fails: a measurable share of the gateway's CPU per chat request.
    noAsyncTraces: true,
  });
  const log = options.logger;
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === "disconnect" || s.type === "error") log.warn({ nats: s.type }, "NATS connection problem");
      else if (s.type === "reconnect") log.info({ nats: s.type }, "NATS reconnected");
    }
  })();
  return nc;
}
