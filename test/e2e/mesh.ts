import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  type FakeUpstream,
  freePort,
  type ServiceProcess,
  spawnService,
  startFakeAnthropic,
  startFakeOpenAI,
} from "@tokenmesh/testing";
import { startOtlpReceiver } from "./otlp-receiver.js";

const root = fileURLToPath(new URL("../..", import.meta.url));
export const ADMIN_KEY = "e2e-admin-key-0123456789abcdef";

export interface Mesh {
  gateways: { http: string; grpc: string }[];
  fakeOpenAI: FakeUpstream;
  fakeAnthropic: FakeUpstream;
  /** The guard model of the deep tier: a Llama Guard that finds everything unsafe (S1). */
  fakeGuardModel: FakeUpstream;
  otlp: Awaited<ReturnType<typeof startOtlpReceiver>>;
  processes: Map<string, ServiceProcess>;
  /** Each service's ops origin by name (`http://127.0.0.1:<port>`), serving `/readyz`, `/healthz` and `/metrics`. */
  ops: Map<string, string>;
  catalogPath: string;
  /** Kills a service the hard way (SIGKILL) and waits until it is gone. */
  kill(name: string): Promise<void>;
  /** Starts a killed or stopped service again, same ports and environment, and waits until it is ready. */
  restart(name: string): Promise<void>;
  stop(): Promise<void>;
}

function catalog(dir: string, openaiUrl: string, anthropicUrl: string, guardUrl: string): string {
  return `
models:
  - id: local-tiny
    engine: local
    source: ${join(dir, "tiny-chat.gguf")}
    aliases: [tiny]
    context_window: 2048
    max_output_tokens: 64
    slots: 4
    price: { input_per_mtok: 0, output_per_mtok: 0 }
  - id: local-embed
    engine: local
    kind: embedding
    source: ${join(dir, "tiny-embed.gguf")}
    context_window: 512
  - id: gpt-fake
    engine: openai
    base_url: ${openaiUrl}
    api_key_env: FAKE_OPENAI_KEY
    upstream_model: gpt-4o-mini
    aliases: [gpt]
    price: { input_per_mtok: 0.15, output_per_mtok: 0.60, cached_input_per_mtok: 0.075 }
  - id: embed-fake
    engine: openai
    kind: embedding
    base_url: ${openaiUrl}
    api_key_env: FAKE_OPENAI_KEY
    upstream_model: text-embedding-3-small
  - id: claude-fake
    engine: anthropic
    base_url: ${anthropicUrl}
    api_key_env: FAKE_ANTHROPIC_KEY
    upstream_model: claude-3-5-haiku-latest
    price: { input_per_mtok: 0.8, output_per_mtok: 4 }
  - id: priced
    engine: openai
    base_url: ${openaiUrl}
    api_key_env: FAKE_OPENAI_KEY
    upstream_model: gpt-4o-mini
    price: { input_per_mtok: 1000, output_per_mtok: 1000 }
  - id: gpt-slow
    engine: openai
    base_url: ${openaiUrl}
    api_key_env: FAKE_OPENAI_KEY
    upstream_model: gpt-4o-mini+slow-40
    price: { input_per_mtok: 1, output_per_mtok: 1 }
  - id: flaky-to-priced
    engine: openai
    base_url: ${openaiUrl}
    api_key_env: FAKE_OPENAI_KEY
    upstream_model: gpt-4o-mini+error-503
    fallbacks: [priced]
  - id: embed-priced
    engine: openai
    kind: embedding
    base_url: ${openaiUrl}
    api_key_env: FAKE_OPENAI_KEY
    upstream_model: text-embedding-3-small
    price: { input_per_mtok: 1000, output_per_mtok: 0 }
  - id: guard-model
    engine: openai
    base_url: ${guardUrl}
    api_key_env: FAKE_OPENAI_KEY
    upstream_model: llama-guard-3-8b
  - id: broken-upstream
    engine: openai
    base_url: ${openaiUrl}
    api_key_env: FAKE_OPENAI_KEY
    upstream_model: gpt-4o-mini+error-500
  - id: down-upstream
    engine: openai
    base_url: http://127.0.0.1:9/v1
    api_key_env: FAKE_OPENAI_KEY
    upstream_model: gpt-4o-mini
    timeout_ms: 2000
  - id: flaky-with-fallback
    engine: openai
    base_url: ${openaiUrl}
    api_key_env: FAKE_OPENAI_KEY
    upstream_model: gpt-4o-mini+error-503
    fallbacks: [gpt-fake]
  - id: gpt-limited
    engine: openai
    base_url: ${openaiUrl}
    api_key_env: FAKE_OPENAI_KEY
    upstream_model: gpt-4o-mini+slow-20
    max_concurrent: 2
guard:
  blocked_patterns:
    - { id: no-internal-hosts, pattern: "corp\\\\.internal", action: block }
  policies:
    deep: { deep: { model: guard-model, format: llama_guard, apply_to: input, mode: block, timeout_ms: 5000 } }
  teams: { deep-team: deep }
routes:
  auto: { default_tier: small, tiers: { small: [local-tiny], premium: [gpt-fake, priced] }, scoring: { thresholds: { premium: 0.5 } } }
  retry: { max_attempts: 2, base_delay_ms: 10, max_delay_ms: 50 }
  cache: { enabled: true, ttl_s: 60 }
limits:
  teams: { e2e-fair: { max_concurrent: 1 } }
  queue: { lease_ms: 2000 }
`;
}

/**
 * Starts the whole mesh as real processes: inference (the local engine on generated GGUF files, and fake OpenAI
 * and Anthropic upstreams), guard, router, cost, and `gateways` gateway replicas, against the test run's NATS and
 * Redis, exporting traces to an in-test OTLP receiver.
 */
export async function startMesh(options: {
  natsUrl: string;
  redisUrl: string;
  gateways?: number;
  /** Extra environment for every service. */
  env?: Record<string, string>;
}): Promise<Mesh> {
  const dir = await mkdtemp(join(tmpdir(), "tokenmesh-e2e-"));
  const processes = new Map<string, ServiceProcess>();
  const fakeOpenAI = await startFakeOpenAI({ apiKey: "sk-fake-openai" });
  const fakeAnthropic = await startFakeAnthropic({ apiKey: "sk-ant-fake" });
  const fakeGuardModel = await startFakeOpenAI({ apiKey: "sk-fake-openai", behavior: { text: "unsafe\nS1" } });
  const otlp = await startOtlpReceiver();
  const make = await spawnService({
    cmd: process.execPath,
    args: [join(root, "packages/testing/dist/models/make-test-models.js"), dir],
  });
  await make.waitForExit(60_000);
  const catalogPath = join(dir, "mesh.yaml");
  await writeFile(catalogPath, catalog(dir, fakeOpenAI.url, fakeAnthropic.url, fakeGuardModel.url));

  const ports = {
    inference: [await freePort(), await freePort()],
    guard: [await freePort(), await freePort()],
    router: [await freePort(), await freePort()],
    cost: [await freePort(), await freePort()],
  } as const;
  const common = {
    NATS_URL: options.natsUrl,
    REDIS_URL: options.redisUrl,
    MESH_CONFIG: catalogPath,
    LOG_LEVEL: "warn",
    OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
    OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    OTEL_BSP_SCHEDULE_DELAY: "100",
    FAKE_OPENAI_KEY: "sk-fake-openai",
    FAKE_ANTHROPIC_KEY: "sk-ant-fake",
    TOKENMESH_ADMIN_KEY: ADMIN_KEY,
    ...options.env,
  };
  const specs = new Map<string, Parameters<typeof spawnService>[0]>();
  const ops = new Map<string, string>();
  const start = async (name: string, service: string, env: Record<string, string>, readyUrl: string) => {
    const spec = {
      name,
      cmd: process.execPath,
      args: ["--import", "@tokenmesh/telemetry/register", "dist/main.js"],
      cwd: join(root, "services", service),
      env: { ...common, ...env },
      readyUrl,
      readyTimeoutMs: 60_000,
      stopTimeoutMs: 8_000,
    };
    specs.set(name, spec);
    ops.set(name, new URL(readyUrl).origin);
    processes.set(name, await spawnService(spec));
  };
  const gateways: Mesh["gateways"] = [];
  try {
    const [ig, io] = ports.inference;
    const [gg, go] = ports.guard;
    const [rg, ro] = ports.router;
    const [cg, co] = ports.cost;
    await Promise.all([
      start(
        "inference",
        "inference",
        { INFERENCE_GRPC_PORT: String(ig), INFERENCE_OPS_PORT: String(io) },
        `http://127.0.0.1:${io}/readyz`,
      ),
      start(
        "guard",
        "guard",
        { GUARD_GRPC_PORT: String(gg), GUARD_OPS_PORT: String(go), ROUTER_ADDR: `127.0.0.1:${rg}` },
        `http://127.0.0.1:${go}/readyz`,
      ),
      start("cost", "cost", { COST_GRPC_PORT: String(cg), COST_OPS_PORT: String(co) }, `http://127.0.0.1:${co}/readyz`),
    ]);
    await start(
      "router",
      "router",
      { ROUTER_GRPC_PORT: String(rg), ROUTER_OPS_PORT: String(ro), INFERENCE_ADDR: `127.0.0.1:${ig}` },
      `http://127.0.0.1:${ro}/readyz`,
    );
    for (let i = 0; i < (options.gateways ?? 1); i++) {
      const http = await freePort();
      const grpc = await freePort();
      await start(
        `gateway-${i}`,
        "gateway",
        {
          GATEWAY_HTTP_PORT: String(http),
          GATEWAY_GRPC_PORT: String(grpc),
          GUARD_ADDR: `127.0.0.1:${gg}`,
          ROUTER_ADDR: `127.0.0.1:${rg}`,
          COST_ADDR: `127.0.0.1:${cg}`,
          // Short, so the slow-client test does not wait 30 s.
          GATEWAY_REQUEST_TIMEOUT_MS: "3000",
          GATEWAY_HEADERS_TIMEOUT_MS: "2000",
        },
        `http://127.0.0.1:${http}/readyz`,
      );
      gateways.push({ http: `http://127.0.0.1:${http}`, grpc: `127.0.0.1:${grpc}` });
    }
  } catch (err) {
    // A service that failed to start must not leave the others running.
    for (const p of processes.values()) await p.stop();
    await Promise.all([fakeOpenAI.close(), fakeAnthropic.close(), fakeGuardModel.close(), otlp.close()]);
    throw err;
  }
  return {
    gateways,
    fakeOpenAI,
    fakeAnthropic,
    fakeGuardModel,
    otlp,
    processes,
    ops,
    catalogPath,
    async kill(name) {
      const p = processes.get(name);
      if (!p) throw new Error(`no service ${name}`);
      p.child.kill("SIGKILL");
      await p.waitForExit(10_000);
    },
    async restart(name) {
      const spec = specs.get(name);
      if (!spec) throw new Error(`no service ${name}`);
      processes.set(name, await spawnService(spec));
    },
    async stop() {
      const order = [...processes.entries()].reverse();
      for (const [, p] of order) await p.stop();
      await fakeOpenAI.close();
      await fakeAnthropic.close();
      await fakeGuardModel.close();
      await otlp.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Creates a virtual key through the admin API. */
export async function createKey(gateway: string, body: Record<string, unknown>): Promise<{ id: string; key: string }> {
  const res = await fetch(`${gateway}/admin/keys`, {
    method: "POST",
    headers: { authorization: `Bearer ${ADMIN_KEY}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (res.status !== 201) throw new Error(`create key: ${res.status} ${await res.text()}`);
  return (await res.json()) as { id: string; key: string };
}
