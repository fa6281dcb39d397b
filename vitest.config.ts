import { defineConfig } from "vitest/config";

// Five projects: pure unit tests beside the code; integration tests per service/package against real NATS and
// Redis (started once per run by packages/testing's global setup); end-to-end tests of the whole mesh; the fuzz
// suite, hostile generated inputs against the whole mesh's gateway (FUZZ_SEED, FUZZ_RUNS); the fault suite, the
// mesh under load while each service, NATS and Redis fail in turn (FAULT_RPS, FAULT_SECONDS; test/fault/README.md).
const infra = ["./packages/testing/src/global-setup.ts"];

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["{packages,services}/*/src/**/*.test.ts", "scripts/*.test.ts"],
        },
      },
      {
        test: {
          name: "integration",
          include: ["{packages,services}/*/test/**/*.int.test.ts", "scripts/test/**/*.int.test.ts"],
          globalSetup: infra,
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
      {
        test: {
          name: "e2e",
          include: ["test/e2e/**/*.test.ts"],
          globalSetup: infra,
          testTimeout: 120_000,
          hookTimeout: 180_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: "fuzz",
          include: ["test/fuzz/**/*.test.ts"],
          globalSetup: infra,
          testTimeout: 900_000,
          hookTimeout: 180_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: "fault",
          include: ["test/fault/**/*.test.ts"],
          // The suite starts NATS and Redis of its own: it restarts them.
          testTimeout: 600_000,
          hookTimeout: 180_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
