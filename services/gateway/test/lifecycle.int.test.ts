import { fileURLToPath } from "node:url";
import { freePort, type ServiceProcess, serviceLifecycleSuite, spawnService } from "@tokenmesh/testing";
import { afterAll, beforeAll, inject } from "vitest";

const catalog = fileURLToPath(new URL("../../../config/mesh.yaml", import.meta.url));
let router: ServiceProcess | undefined;
let routerAddr = "";

// The gateway is ready only when it could serve a request: a real router must answer.
beforeAll(async () => {
  const [grpc, ops] = [await freePort(), await freePort()];
  router = await spawnService({
    name: "router",
    cmd: process.execPath,
    args: ["--import", "@tokenmesh/telemetry/register", "dist/main.js"],
    cwd: fileURLToPath(new URL("../../router", import.meta.url)),
    env: {
      REDIS_URL: inject("redisUrl"),
      NATS_URL: inject("natsUrl"),
      MESH_CONFIG: catalog,
      ROUTER_GRPC_PORT: String(grpc),
      ROUTER_OPS_PORT: String(ops),
      LOG_LEVEL: "warn",
    },
    readyUrl: `http://127.0.0.1:${ops}/readyz`,
  });
  routerAddr = `127.0.0.1:${grpc}`;
});

afterAll(async () => {
  await router?.stop();
});

serviceLifecycleSuite({
  service: "gateway",
  dir: fileURLToPath(new URL("..", import.meta.url)),
  grpcService: "tokenmesh.gateway.v1.GatewayService",
  env: (ports) => ({
    NATS_URL: inject("natsUrl"),
    REDIS_URL: inject("redisUrl"),
    ROUTER_ADDR: routerAddr,
    GATEWAY_GRPC_PORT: String(ports.grpc),
    GATEWAY_HTTP_PORT: String(ports.ops),
    TOKENMESH_ADMIN_KEY: "test-admin-key-0123456789",
    MESH_CONFIG: catalog,
  }),
  badEnv: ["TOKENMESH_ADMIN_KEY", "short"],
});
