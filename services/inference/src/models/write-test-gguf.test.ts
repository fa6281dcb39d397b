import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readGgufFileInfo } from "node-llama-cpp";
import { describe, expect, it } from "vitest";
import {
  buildTestChatModel,
  buildTestEmbeddingModel,
  TEST_CHAT_TEMPLATE,
  TEST_MODEL_VOCAB_SIZE,
  writeTestChatModel,
} from "./write-test-gguf.js";

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

describe("writeTestChatModel", () => {
  it("writes the same bytes for the same options", () => {
    expect(sha(buildTestChatModel())).toBe(sha(buildTestChatModel()));
    expect(sha(buildTestEmbeddingModel({ seed: 9 }))).toBe(sha(buildTestEmbeddingModel({ seed: 9 })));
  });

  it("writes different weights for a different seed", () => {
    expect(sha(buildTestChatModel({ seed: 2 }))).not.toBe(sha(buildTestChatModel({ seed: 3 })));
  });

  it("writes a GGUF v3 llama model with a byte-level vocabulary and a chat template", async () => {
    const dir = await mkdtemp(join(tmpdir(), "gguf-"));
    try {
      const path = join(dir, "m.gguf");
      await writeTestChatModel(path, { embeddingLength: 64, blockCount: 3 });
      const bytes = await readFile(path);
      expect(bytes.subarray(0, 4).toString("latin1")).toBe("GGUF");
      expect(bytes.readUInt32LE(4)).toBe(3);
      const info = await readGgufFileInfo(path);
      expect(info.metadata.general.architecture).toBe("llama");
      expect(info.metadata.tokenizer.ggml.tokens).toHaveLength(TEST_MODEL_VOCAB_SIZE);
      expect(info.metadata.tokenizer.chat_template).toBe(TEST_CHAT_TEMPLATE);
      expect(info.tensorCount).toBe(2 + 9 * 3 + 1);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("refuses head counts that do not divide the hidden size", () => {
    expect(() => buildTestChatModel({ embeddingLength: 100, headCount: 3 })).toThrow(RangeError);
  });
});
