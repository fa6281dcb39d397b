import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readGgufFileInfo } from "node-llama-cpp";
import { describe, expect, it } from "vitest";
import {
  buildTestChatModel,
  buildTestEmbeddingModel,
  quantizeQ8_0,
  TEST_CHAT_TEMPLATE,
  TEST_MODEL_VOCAB_SIZE,
  toHalf,
  writeTestChatModel,
} from "./write-test-gguf.js";

/** Inverse of toHalf for normal and subnormal values (test-side reference). */
function fromHalf(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

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

  it("stores the block matrices as Q8_0 when asked, keeping embeddings, output and norms F32", async () => {
    const dir = await mkdtemp(join(tmpdir(), "gguf-"));
    try {
      const path = join(dir, "q8.gguf");
      await writeTestChatModel(path, { embeddingLength: 64, blockCount: 2, feedForwardLength: 96, weightType: "q8_0" });
      const info = await readGgufFileInfo(path);
      const types = new Map((info.fullTensorInfo ?? []).map((t) => [t.name, Number(t.ggmlType)]));
      expect(types.get("blk.0.attn_q.weight")).toBe(8);
      expect(types.get("blk.1.ffn_down.weight")).toBe(8);
      expect(types.get("blk.0.attn_norm.weight")).toBe(0);
      expect(types.get("token_embd.weight")).toBe(0);
      expect(types.get("output.weight")).toBe(0);
      expect(info.metadata.general.file_type).toBe(7);
      expect((await readFile(path)).length).toBeLessThan(
        buildTestChatModel({ embeddingLength: 64, blockCount: 2, feedForwardLength: 96 }).length,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("refuses Q8_0 for sizes that are not whole blocks of 32", () => {
    expect(() => buildTestChatModel({ embeddingLength: 64, feedForwardLength: 100, weightType: "q8_0" })).toThrow(
      /multiples of 32/,
    );
  });

  it("refuses head counts that do not divide the hidden size", () => {
    expect(() => buildTestChatModel({ embeddingLength: 100, headCount: 3 })).toThrow(RangeError);
  });
});

describe("Q8_0 encoding", () => {
  it("converts floats to IEEE half precision", () => {
    expect(toHalf(1)).toBe(0x3c00);
    expect(toHalf(-2)).toBe(0xc000);
    expect(toHalf(65504)).toBe(0x7bff);
    expect(toHalf(1e6)).toBe(0x7c00);
    expect(toHalf(0)).toBe(0);
    expect(fromHalf(toHalf(2 ** -20))).toBe(2 ** -20);
    expect(Math.abs(fromHalf(toHalf(0.1)) - 0.1)).toBeLessThan(1e-4);
  });

  it("quantises blocks of 32 to a half scale and int8 values within half a step", () => {
    const data = new Float32Array(64).map((_, i) => Math.sin(i) * (i < 32 ? 1 : 0.01));
    const bytes = quantizeQ8_0(data);
    expect(bytes.length).toBe(2 * 34);
    for (let k = 0; k < 2; k++) {
      const d = fromHalf(bytes.readUInt16LE(k * 34));
      const amax = Math.max(...data.subarray(k * 32, k * 32 + 32).map(Math.abs));
      expect(d).toBeCloseTo(amax / 127, 4);
      for (let j = 0; j < 32; j++) {
        const q = bytes.readInt8(k * 34 + 2 + j);
        expect(Math.abs(q * d - (data[k * 32 + j] ?? 0))).toBeLessThanOrEqual(d * 0.5 + 1e-6);
      }
    }
  });
});
