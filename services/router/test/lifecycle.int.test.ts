import { fileURLToPath } from "node:url";
import { serviceLifecycleSuite } from "@tokenmesh/testing";
import { inject } from "vitest";

serviceLifecycleSuite({
  service: "router",
  dir: fileURLToPath(new URL("..", import.meta.url)),
  grpcService: "tokenmesh.router.v1.RouterService",
  env: (ports) => ({
    NATS_URL: inject("natsUrl"),
    REDIS_URL: inject("redisUrl"),
    ROUTER_GRPC_PORT: String(ports.grpc),
    ROUTER_OPS_PORT: String(ports.ops),
    MESH_CONFIG: fileURLToPath(new URL("../../../config/mesh.yaml", import.meta.url)),
  }),
  badEnv: ["REDIS_URL", "http://not-redis"],
});
