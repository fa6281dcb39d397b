/**
 * `@tokenmesh/testing/models`: tiny deterministic GGUF models for tests, benchmarks and `npm start` (test tooling,
 * never shipped in a production image).
 */
export { makeTestModels, TEST_MODEL_FILES } from "./make-test-models.js";
export {
  buildTestChatModel,
  buildTestEmbeddingModel,
  TEST_CHAT_TEMPLATE,
  TEST_MODEL_TOKENS,
  TEST_MODEL_VOCAB_SIZE,
  type TestModelOptions,
  writeTestChatModel,
  writeTestEmbeddingModel,
} from "./write-test-gguf.js";
