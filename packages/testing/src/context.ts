/**
 * Types the values the global setup provides, so `inject("natsUrl")` / `inject("redisUrl")` are strings in any
 * test that imports `@tokenmesh/testing` (or this package's global setup).
 */
// Brings the module into scope so it can be augmented; erased from the emitted JavaScript.
import type {} from "vitest";

declare module "vitest" {
  export interface ProvidedContext {
    /** A NATS server with JetStream, shared by the whole test run: isolate tests with `uniqueName()` streams. */
    natsUrl: string;
    /** A Redis server shared by the whole test run: isolate tests with `uniqueName()` key prefixes. */
    redisUrl: string;
  }
}
