import type { ServiceHost } from "@tokenmesh/runtime";
import { registry } from "@tokenmesh/telemetry";
import type { FastifyInstance } from "fastify";

/** `/healthz`, `/readyz` and `/metrics` on the gateway's own HTTP port. */
export function registerOpsRoutes(app: FastifyInstance, host: ServiceHost): void {
  app.get("/healthz", async () => ({ status: "ok" }));
  app.get("/readyz", async (_req, reply) => {
    const r = await host.readiness();
    return reply.code(r.ok ? 200 : 503).send({ status: r.ok ? "ready" : "not ready", checks: r.checks });
  });
  app.get("/metrics", async (_req, reply) => {
    return reply.type(registry.contentType).send(await registry.metrics());
  });
}
