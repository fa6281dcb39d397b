import { fileURLToPath } from "node:url";
import { serviceLifecycleSuite } from "@tokenmesh/testing";
import { inject } from "vitest";

serviceLifecycleSuite({
  service: "gateway",
  dir: fileURLToPath(new URL("..", import.meta.url)),
  grpcService: "tokenmesh.gateway.v1.GatewayService",
  env: (ports) => ({
    NATS_URL: inject("natsUrl"),
    REDIS_URL: inject("redisUrl"),
    GATEWAY_GRPC_PORT: String(ports.grpc),
    GATEWAY_HTTP_PORT: String(ports.ops),
    TOKENMESH_ADMIN_KEY: "test-admin-key-0123456789",
    MESH_CONFIG: fileURLToPath(new URL("../../../config/mesh.yaml", import.meta.url)),
  }),
  badEnv: ["TOKENMESH_ADMIN_KEY", "short"],
});
