#!/usr/bin/env node
/**
 * CLI: writes `tiny-chat.gguf` and `tiny-embed.gguf` into a directory (default `<repo>/models`) unless they exist.
 * Used by `npm run models`, `npm start`, the Docker build and tests on machines without real models. Usage:
 * `node packages/testing/dist/models/make-test-models.js [dir]` (or the `tokenmesh-test-models` bin).
 */
import { access } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { writeTestChatModel, writeTestEmbeddingModel } from "./write-test-gguf.js";

/** File names of the test models inside the output directory. */
export const TEST_MODEL_FILES = { chat: "tiny-chat.gguf", embedding: "tiny-embed.gguf" } as const;

/** Writes the missing test models into `dir`; returns their paths. Existing files are left untouched. */
export async function makeTestModels(dir: string): Promise<{ chat: string; embedding: string }> {
  const chat = join(dir, TEST_MODEL_FILES.chat);
  const embedding = join(dir, TEST_MODEL_FILES.embedding);
  if (!(await exists(chat))) await writeTestChatModel(chat);
  if (!(await exists(embedding))) await writeTestEmbeddingModel(embedding);
  return { chat, embedding };
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  // dist/models/make-test-models.js -> <repo>/models
  const dir = resolve(process.argv[2] ?? fileURLToPath(new URL("../../../../models", import.meta.url)));
  const paths = await makeTestModels(dir);
  process.stdout.write(`test models ready: ${paths.chat} ${paths.embedding}\n`);
}
