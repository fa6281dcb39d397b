import type { NatsConnection } from "@nats-io/transport-node";

/** A readiness check: a round trip to the NATS server. */
export function natsReadiness(nc: NatsConnection): () => Promise<string> {
  return async () => {
    if (nc.isClosed()) throw new Error("connection closed");
    const rtt = await nc.rtt();
    return `rtt ${rtt.toFixed(1)} ms`;
  };
}
