/**
 * `@tokenmesh/testing`: real NATS (JetStream) and Redis for tests, and helpers to run services as processes.
 */
import "./context.js";

export { startFakeAnthropic } from "./fake-anthropic.js";
export {
  type FakeBehavior,
  type FakeUpstream,
  type FakeUpstreamOptions,
  fakeEmbedding,
  parseModelDirectives,
  type RecordedRequest,
  startFakeOpenAI,
  wordsEmbedding,
} from "./fake-openai.js";
export {
  DEFAULT_BIN_DIRS,
  dockerAvailable,
  findBinary,
  type Infra,
  type InfraSource,
  InfraUnavailableError,
  type NatsServerHandle,
  type ProvideInfraOptions,
  provideInfra,
  type RedisServerHandle,
  type StartNatsServerOptions,
  type StartRedisServerOptions,
  startNatsServer,
  startRedisServer,
} from "./infra.js";
export {
  grpcHealth,
  type LifecycleSuiteOptions,
  type ServicePorts,
  serviceLifecycleSuite,
} from "./lifecycle.js";
export { uniqueName } from "./names.js";
export { freePort } from "./ports.js";
export {
  type ExitStatus,
  type ServiceProcess,
  ServiceStartError,
  type SpawnServiceOptions,
  spawnService,
  waitForUrl,
} from "./process.js";
export { type WaitForOptions, WaitForTimeoutError, waitFor } from "./wait.js";
