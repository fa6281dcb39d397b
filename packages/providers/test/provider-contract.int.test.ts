import { ModelEntrySchema } from "@tokenmesh/catalog";
import { type FakeUpstream, startFakeAnthropic, startFakeOpenAI } from "@tokenmesh/testing";
import { type ContractFailure, type ContractRow, providerContractSuite } from "@tokenmesh/testing/provider-contract";
import { expect } from "vitest";
import { Providers, type RemoteModelEntry } from "../src/index.js";

// The remote rows of the provider contract (the local engine's row is in services/inference/test). Each row runs
// its engine through the public `Providers` registry against a fake upstream that speaks the provider's wire format.

const KEYS: Record<string, string> = { FAKE_OPENAI_KEY: "sk-test-openai", FAKE_ANTHROPIC_KEY: "sk-ant-test" };

/** Events before the provider's terminator, for a six-word answer: all but `[DONE]` / all but `message_stop`. */
const EVENTS_BEFORE_TERMINATOR = { openai: 9, anthropic: 11 };

function remoteRow(kind: "openai" | "anthropic"): ContractRow {
  return {
    name: kind === "openai" ? "openai (OpenAI-compatible)" : "anthropic",
    async setup() {
      const fake: FakeUpstream =
        kind === "openai"
          ? await startFakeOpenAI({ apiKey: KEYS.FAKE_OPENAI_KEY })
          : await startFakeAnthropic({ apiKey: KEYS.FAKE_ANTHROPIC_KEY });
      const entry = ModelEntrySchema.parse({
        id: `${kind}-contract`,
        engine: kind,
        base_url: fake.url,
        api_key_env: kind === "openai" ? "FAKE_OPENAI_KEY" : "FAKE_ANTHROPIC_KEY",
        upstream_model: `${kind}-upstream`,
      }) as RemoteModelEntry;
      const providers = new Providers({ getSecret: (name) => KEYS[name] });
      const engine = providers.engineFor(entry);
      return {
        generate: (request, signal) => engine.generate({ requestId: "contract", model: entry, request, signal }),
        provoke(failure: ContractFailure) {
          if (failure === "cut") fake.setBehavior({ cutAfterChunks: 3 });
          else if (failure === "truncate") fake.setBehavior({ truncateAfterChunks: EVENTS_BEFORE_TERMINATOR[kind] });
          else fake.setBehavior({ errorStatus: failure });
          return {};
        },
        slow: () => fake.setBehavior({ chunkDelayMs: 50 }),
        async stopped() {
          expect(await fake.requests.at(-1)?.closed).toBe("aborted");
        },
        reset: () => fake.reset(),
        async close() {
          await providers.close();
          await fake.close();
        },
      };
    },
  };
}

providerContractSuite([remoteRow("openai"), remoteRow("anthropic")]);
