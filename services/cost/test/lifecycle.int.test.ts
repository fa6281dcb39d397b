import { fileURLToPath } from "node:url";
import { serviceLifecycleSuite } from "@tokenmesh/testing";
import { inject } from "vitest";

serviceLifecycleSuite({
  service: "cost",
  dir: fileURLToPath(new URL("..", import.meta.url)),
  grpcService: "tokenmesh.cost.v1.CostService",
  env: (ports) => ({
    NATS_URL: inject("natsUrl"),
    REDIS_URL: inject("redisUrl"),
    COST_GRPC_PORT: String(ports.grpc),
    COST_OPS_PORT: String(ports.ops),
    MESH_CONFIG: fileURLToPath(new URL("../../../config/mesh.yaml", import.meta.url)),
  }),
  badEnv: ["NATS_URL", "not a url"],
});
