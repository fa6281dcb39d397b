import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { serviceLifecycleSuite } from "@tokenmesh/testing";
import { makeTestModels } from "@tokenmesh/testing/models";
import { beforeAll, expect } from "vitest";

const dir = mkdtempSync(join(tmpdir(), "inference-lifecycle-"));
const catalog = join(dir, "mesh.yaml");
// On Linux with taskset, the good start also keeps the service on the last CPU (INFERENCE_CPU_AFFINITY).
const pinned = process.platform === "linux" && existsSync("/usr/bin/taskset") ? String(availableParallelism() - 1) : "";

beforeAll(async () => {
  await makeTestModels(dir);
  writeFileSync(
    catalog,
    `models:
  - { id: local-tiny, engine: local, source: ./tiny-chat.gguf, context_window: 512, slots: 2 }
  - { id: local-embed, engine: local, kind: embedding, source: ./tiny-embed.gguf, context_window: 256 }
  - { id: remote, engine: openai, base_url: "http://127.0.0.1:9/v1", api_key_env: UNSET_KEY, upstream_model: m }
`,
  );
});

serviceLifecycleSuite({
  service: "inference",
  dir: fileURLToPath(new URL("..", import.meta.url)),
  grpcService: "tokenmesh.inference.v1.InferenceService",
  env: (ports) => ({
    INFERENCE_GRPC_PORT: String(ports.grpc),
    INFERENCE_OPS_PORT: String(ports.ops),
    MESH_CONFIG: catalog,
    INFERENCE_MODELS_DIR: join(dir, "cache"),
    ...(pinned ? { INFERENCE_CPU_AFFINITY: pinned } : {}),
  }),
  whileReady: (proc) => {
    if (!pinned) return;
    // Every thread, the engine's (started when the models loaded, after the pinning) included.
    const tasks = readdirSync(`/proc/${proc.child.pid}/task`);
    expect(tasks.length).toBeGreaterThan(4);
    for (const tid of tasks) {
      const status = readFileSync(`/proc/${proc.child.pid}/task/${tid}/status`, "utf8");
      expect(/^Cpus_allowed_list:\s*(\S+)$/m.exec(status)?.[1], `thread ${tid}`).toBe(pinned);
    }
  },
  badEnv: ["INFERENCE_CPU_AFFINITY", "1;reboot"],
  readyTimeoutMs: 60_000,
});
