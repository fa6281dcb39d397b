import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { serviceLifecycleSuite } from "@tokenmesh/testing";
import { makeTestModels } from "@tokenmesh/testing/models";
import { beforeAll } from "vitest";

const dir = mkdtempSync(join(tmpdir(), "inference-lifecycle-"));
const catalog = join(dir, "mesh.yaml");

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
  }),
  badEnv: ["INFERENCE_GPU", "maybe"],
  readyTimeoutMs: 60_000,
});
