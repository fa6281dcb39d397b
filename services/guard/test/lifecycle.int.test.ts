import { fileURLToPath } from "node:url";
import { serviceLifecycleSuite } from "@tokenmesh/testing";
import { inject } from "vitest";

serviceLifecycleSuite({
  service: "guard",
  dir: fileURLToPath(new URL("..", import.meta.url)),
  grpcService: "tokenmesh.guard.v1.GuardService",
  env: (ports) => ({
    NATS_URL: inject("natsUrl"),
    GUARD_GRPC_PORT: String(ports.grpc),
    GUARD_OPS_PORT: String(ports.ops),
    MESH_CONFIG: fileURLToPath(new URL("../../../config/mesh.yaml", import.meta.url)),
  }),
  badEnv: ["GUARD_GRPC_PORT", "not-a-port"],
});
