import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type LocalModelEntry, ModelEntrySchema } from "@tokenmesh/catalog";
import { ChatRequest, Role } from "@tokenmesh/proto/common/v1/chat";
import { makeTestModels } from "@tokenmesh/testing/models";
import { type ContractFailure, providerContractSuite } from "@tokenmesh/testing/provider-contract";
import { LocalEngine } from "../src/engines/local/local-engine.js";

// The local engine's row of the provider contract (the remote rows are in packages/providers/test): the real
// node-llama-cpp engine on the tiny generated chat model, one slot so that a request that never frees it shows.

const NO_UPSTREAM = "the local engine has no upstream HTTP exchange, so there is no provider status to map";

providerContractSuite([
  {
    name: "local (GGUF engine)",
    skip: {
      chatOneChunk:
        "the local engine generates token by token and sends chunks as they come, streamed or not (the gateway assembles a non-streamed answer)",
      tools:
        "the local engine does not support tools: it refuses them with INVALID_ARGUMENT (local-engine.int.test.ts)",
      rateLimited: `${NO_UPSTREAM}; a full slot queue is RESOURCE_EXHAUSTED, retryable (inference.grpc.int.test.ts)`,
      unavailable: `${NO_UPSTREAM}; a model that is not loaded is UNAVAILABLE, retryable (local-engine.int.test.ts)`,
      unauthorized: "local models have no API key",
      cut: "no connection lies between the engine and its model, so there is no stream to cut",
      truncated: "no provider terminator: the engine itself ends the stream after the usage chunk",
    },
    async setup() {
      const dir = await mkdtemp(join(tmpdir(), "inference-contract-"));
      const paths = await makeTestModels(dir);
      const engine = new LocalEngine({ modelsDir: join(dir, "cache"), gpu: false });
      const entry = ModelEntrySchema.parse({
        id: "local-contract",
        engine: "local",
        source: paths.chat,
        context_window: 1024,
        max_output_tokens: 512,
        slots: 1,
        queue_size: 1,
      }) as LocalModelEntry;
      await engine.load(entry);
      return {
        generate: (request, signal) => engine.generate({ requestId: "contract", model: entry, request, signal }),
        provoke(failure: ContractFailure) {
          // A request the model must refuse: OpenAI's temperature range is 0–2.
          if (failure === 400) return { temperature: 5 };
          throw new Error(`the local row cannot provoke ${failure}`);
        },
        async stopped() {
          // The only slot is free again: a new request (allowed to queue) gets it and finishes before its deadline.
          const request = ChatRequest.fromPartial({
            messages: [{ role: Role.ROLE_USER, content: "again" }],
            maxTokens: 2,
          });
          for await (const _ of engine.generate({
            requestId: "after-cancel",
            model: entry,
            request,
            signal: AbortSignal.timeout(10_000),
          })) {
            // drained
          }
        },
        reset: () => undefined,
        async close() {
          await engine.close();
          await rm(dir, { recursive: true, force: true });
        },
      };
    },
  },
]);
