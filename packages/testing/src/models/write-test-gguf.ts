import { mkdir, rename, writeFile } from "node:fs/promises";
import { dirname } from "node:path";

/**
 * Writes tiny, deterministic GGUF models for tests, benchmarks and `npm start` on machines without a real model.
 *
 * The models are llama-architecture transformers with random weights drawn from a seeded PRNG, so the same options
 * always give the same bytes. They speak nonsense, but they exercise the whole engine path (chat template,
 * tokenizer, sampling, batching, embeddings) at CPU speeds of hundreds of tokens per second.
 *
 * Tokenizer: a GPT-2 style byte-level BPE with no merges. Token ids 0..255 are the 256 bytes (in GPT-2's
 * byte-to-unicode spelling), followed by the special tokens below. Every byte of text is therefore exactly one token
 * and detokenizing then re-tokenizing any generated text gives back the same token count.
 *
 * Output shaping: the chat model can only (in practice) emit lowercase ASCII letters, space, "," and ".", with
 * English-like letter frequencies. One residual-stream dimension is a constant the layers never write to; the output
 * matrix uses it to push every other token (other bytes, BOS, EOS, `<|im_start|>`, `<|im_end|>`) about 50 logits
 * down. Generation therefore never ends by itself: it runs until max_tokens or a stop string, which makes
 * `finish_reason` predictable in tests, and the text is always valid UTF-8.
 */

/** Options of the test models; every field has a small default suited to a 2-core CPU. */
export interface TestModelOptions {
  /** PRNG seed: same seed and options, same bytes. */
  seed?: number;
  /** Hidden size (n_embd). */
  embeddingLength?: number;
  /** Transformer blocks. */
  blockCount?: number;
  /** Attention heads; embeddingLength must be a multiple of it. */
  headCount?: number;
  /** KV heads (grouped-query attention); headCount must be a multiple of it. */
  headCountKv?: number;
  /** Hidden size of the SwiGLU feed-forward. */
  feedForwardLength?: number;
  /** Trained context length written to the metadata (what node-llama-cpp uses as the maximum context). */
  contextLength?: number;
  /** `general.name`. */
  name?: string;
  /**
   * Storage of the transformer blocks' weight matrices: `f32`, or `q8_0` (llama.cpp's 8-bit blocks of 32, what real
   * deployments ship). Q8_0 reads a quarter of the bytes per token and lets llama.cpp's CPU kernels reuse each weight
   * block across the tokens of a batch, so it behaves like a real quantized model under concurrent streams. Token
   * embeddings, the output matrix and the norms stay F32 (the output shaping needs exact logits).
   */
  weightType?: "f32" | "q8_0";
}

/** The token ids of the specials, identical in both test models. */
export const TEST_MODEL_TOKENS = {
  bos: 256,
  eos: 257,
  imStart: 258,
  imEnd: 259,
  pad: 260,
} as const;

/** The vocabulary size of the test models: 256 bytes plus 5 specials. */
export const TEST_MODEL_VOCAB_SIZE = 261;

/** ChatML, as Qwen and many others ship it; node-llama-cpp recognises it and uses its ChatML wrapper. */
export const TEST_CHAT_TEMPLATE =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const chatDefaults: Required<TestModelOptions> = {
  seed: 1,
  embeddingLength: 128,
  blockCount: 2,
  headCount: 4,
  headCountKv: 2,
  feedForwardLength: 256,
  contextLength: 2048,
  name: "tokenmesh-tiny-chat",
  weightType: "f32",
};

const embedDefaults: Required<TestModelOptions> = {
  ...chatDefaults,
  seed: 2,
  embeddingLength: 64,
  feedForwardLength: 128,
  name: "tokenmesh-tiny-embed",
};

/**
 * Writes the tiny chat model to `path` (directories created; written to a temp file then renamed, so a reader never
 * sees a half-written model). Deterministic: same options, same bytes.
 */
export async function writeTestChatModel(path: string, opts: TestModelOptions = {}): Promise<void> {
  await writeAtomically(path, buildTestChatModel(opts));
}

/**
 * Writes the tiny embedding model to `path`: same architecture and tokenizer as the chat model, mean pooling, no
 * output shaping. Its embedding dimension is `embeddingLength` (default 64). Deterministic like the chat model.
 */
export async function writeTestEmbeddingModel(path: string, opts: TestModelOptions = {}): Promise<void> {
  await writeAtomically(path, buildTestEmbeddingModel(opts));
}

/** The bytes of the tiny chat model (see {@link writeTestChatModel}). */
export function buildTestChatModel(opts: TestModelOptions = {}): Buffer {
  return buildModel({ ...chatDefaults, ...opts }, { shapeOutput: true, pooling: undefined });
}

/** The bytes of the tiny embedding model (see {@link writeTestEmbeddingModel}). */
export function buildTestEmbeddingModel(opts: TestModelOptions = {}): Buffer {
  return buildModel({ ...embedDefaults, ...opts }, { shapeOutput: false, pooling: POOLING_MEAN });
}

async function writeAtomically(path: string, bytes: Buffer): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.${Date.now()}.tmp`;
  await writeFile(tmp, bytes);
  await rename(tmp, path);
}

// --- model construction -------------------------------------------------------------------------------------------

const POOLING_MEAN = 1;
/** Value of the constant residual dimension, and how hard it pushes unwanted tokens down. */
const CONSTANT_DIM_VALUE = 2;
const SUPPRESSION = 60;

/** Rough English frequencies (per mille) of the bytes the chat model may emit. */
const ALLOWED_OUTPUT: Record<string, number> = {
  " ": 180,
  e: 102,
  t: 73,
  a: 66,
  o: 60,
  i: 56,
  n: 54,
  s: 50,
  h: 49,
  r: 48,
  d: 34,
  l: 32,
  c: 22,
  u: 22,
  m: 19,
  w: 19,
  f: 18,
  g: 16,
  y: 16,
  p: 15,
  b: 12,
  ",": 10,
  ".": 10,
  v: 8,
  k: 6,
  j: 1.5,
  x: 1.5,
  q: 1,
  z: 1,
};

interface Tensor {
  name: string;
  /** ggml order: dims[0] is the contiguous (innermost) dimension. */
  dims: number[];
  data: Float32Array;
  /** Stored as Q8_0 instead of F32 (dims[0] must be a multiple of 32). */
  q8?: boolean;
}

function buildModel(
  o: Required<TestModelOptions>,
  mode: { shapeOutput: boolean; pooling: number | undefined },
): Buffer {
  if (o.embeddingLength % o.headCount !== 0) throw new RangeError("embeddingLength must be a multiple of headCount");
  if (o.headCount % o.headCountKv !== 0) throw new RangeError("headCount must be a multiple of headCountKv");
  const n = o.embeddingLength;
  const headDim = n / o.headCount;
  const nKv = headDim * o.headCountKv;
  const vocab = TEST_MODEL_VOCAB_SIZE;
  const rand = mulberry32(o.seed);
  // Uniform in [-a, a] has std a/sqrt(3); scaling by 1/sqrt(fan_in) keeps activations O(1) through the layers.
  const uniform = (count: number, std: number): Float32Array => {
    const a = std * Math.sqrt(3);
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) out[i] = (rand() * 2 - 1) * a;
    return out;
  };
  const ones = (count: number) => new Float32Array(count).fill(1);
  const q8 = o.weightType === "q8_0";
  if (q8 && (n % Q8_0_BLOCK !== 0 || o.feedForwardLength % Q8_0_BLOCK !== 0)) {
    throw new RangeError(`q8_0 needs embeddingLength and feedForwardLength to be multiples of ${Q8_0_BLOCK}`);
  }
  const matrix = (inDim: number, outDim: number, name: string): Tensor => ({
    name,
    dims: [inDim, outDim],
    data: uniform(inDim * outDim, 1 / Math.sqrt(inDim)),
    q8,
  });
  // Row 0 of an output projection writes residual dimension 0, which must stay constant (see the file comment).
  const zeroRow0 = (t: Tensor): Tensor => {
    if (mode.shapeOutput) t.data.fill(0, 0, t.dims[0]);
    return t;
  };

  const tokenEmbd: Tensor = { name: "token_embd.weight", dims: [n, vocab], data: uniform(n * vocab, 1) };
  if (mode.shapeOutput) for (let t = 0; t < vocab; t++) tokenEmbd.data[t * n] = CONSTANT_DIM_VALUE;

  const tensors: Tensor[] = [tokenEmbd];
  for (let b = 0; b < o.blockCount; b++) {
    const p = `blk.${b}.`;
    tensors.push(
      { name: `${p}attn_norm.weight`, dims: [n], data: ones(n) },
      matrix(n, n, `${p}attn_q.weight`),
      matrix(n, nKv, `${p}attn_k.weight`),
      matrix(n, nKv, `${p}attn_v.weight`),
      zeroRow0(matrix(n, n, `${p}attn_output.weight`)),
      { name: `${p}ffn_norm.weight`, dims: [n], data: ones(n) },
      matrix(n, o.feedForwardLength, `${p}ffn_gate.weight`),
      matrix(n, o.feedForwardLength, `${p}ffn_up.weight`),
      zeroRow0(matrix(o.feedForwardLength, n, `${p}ffn_down.weight`)),
    );
  }
  tensors.push({ name: "output_norm.weight", dims: [n], data: ones(n) });
  const output: Tensor = { name: "output.weight", dims: [n, vocab], data: uniform(n * vocab, 2.5 / Math.sqrt(n)) };
  if (mode.shapeOutput) {
    // After the final RMSNorm the constant dimension is about CONSTANT_DIM_VALUE / rms(h) ~ 0.8, so column 0 acts as
    // a per-token logit bias: log-frequency for allowed bytes, a large negative value for everything else.
    const maxFreq = Math.max(...Object.values(ALLOWED_OUTPUT));
    for (let t = 0; t < vocab; t++) {
      const freq = t < 256 ? ALLOWED_OUTPUT[String.fromCharCode(t)] : undefined;
      output.data[t * n] = freq === undefined ? -SUPPRESSION : Math.log(freq / maxFreq);
    }
  }
  tensors.push(output);

  const meta = new GgufMetadata();
  meta.string("general.architecture", "llama");
  meta.string("general.name", o.name);
  meta.u32("general.file_type", q8 ? 7 : 0); // MOSTLY_Q8_0 or ALL_F32
  meta.u32("general.alignment", ALIGNMENT);
  meta.u32("llama.context_length", o.contextLength);
  meta.u32("llama.embedding_length", n);
  meta.u32("llama.block_count", o.blockCount);
  meta.u32("llama.feed_forward_length", o.feedForwardLength);
  meta.u32("llama.rope.dimension_count", headDim);
  meta.f32("llama.rope.freq_base", 10000);
  meta.u32("llama.attention.head_count", o.headCount);
  meta.u32("llama.attention.head_count_kv", o.headCountKv);
  meta.f32("llama.attention.layer_norm_rms_epsilon", 1e-5);
  meta.u32("llama.vocab_size", vocab);
  if (mode.pooling !== undefined) meta.u32("llama.pooling_type", mode.pooling);
  meta.string("tokenizer.ggml.model", "gpt2");
  meta.string("tokenizer.ggml.pre", "default");
  const tokens = [...byteLevelAlphabet(), "<s>", "</s>", "<|im_start|>", "<|im_end|>", "<pad>"];
  meta.stringArray("tokenizer.ggml.tokens", tokens);
  // 1 = normal, 3 = control (llama_token_type).
  meta.i32Array(
    "tokenizer.ggml.token_type",
    tokens.map((_, i) => (i < 256 ? 1 : 3)),
  );
  // No merges: every byte stays its own token, which is what makes token counts exact after a round trip.
  meta.stringArray("tokenizer.ggml.merges", []);
  meta.u32("tokenizer.ggml.bos_token_id", TEST_MODEL_TOKENS.bos);
  meta.u32("tokenizer.ggml.eos_token_id", TEST_MODEL_TOKENS.eos);
  meta.u32("tokenizer.ggml.padding_token_id", TEST_MODEL_TOKENS.pad);
  meta.bool("tokenizer.ggml.add_bos_token", true);
  meta.bool("tokenizer.ggml.add_eos_token", false);
  meta.string("tokenizer.chat_template", TEST_CHAT_TEMPLATE);
  return encodeGguf(meta, tensors);
}

/** GPT-2's reversible byte-to-unicode map: printable bytes map to themselves, the rest to U+0100 onwards. */
function byteLevelAlphabet(): string[] {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const out: string[] = [];
  let next = 0;
  for (let b = 0; b < 256; b++) out.push(String.fromCodePoint(printable(b) ? b : 256 + next++));
  return out;
}

/** A small, fast PRNG with a 32-bit state: integer arithmetic only, so identical on every platform. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// --- GGUF v3 encoding ---------------------------------------------------------------------------------------------

const ALIGNMENT = 32;
const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian
const GGUF_VERSION = 3;
const ValueType = { U32: 4, I32: 5, F32: 6, BOOL: 7, STRING: 8, ARRAY: 9 } as const;
type ValueType = (typeof ValueType)[keyof typeof ValueType];
const GGML_TYPE_F32 = 0;
const GGML_TYPE_Q8_0 = 8;
/** Q8_0: blocks of 32 weights, each an f16 scale followed by 32 int8 values (34 bytes). */
const Q8_0_BLOCK = 32;
const Q8_0_BLOCK_BYTES = 34;

/** An append-only little-endian byte builder. */
class ByteWriter {
  private chunks: Buffer[] = [];
  length = 0;

  private push(b: Buffer): void {
    this.chunks.push(b);
    this.length += b.length;
  }
  u32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.push(b);
  }
  i32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    this.push(b);
  }
  u64(v: number): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }
  f32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    this.push(b);
  }
  u8(v: number): void {
    this.push(Buffer.from([v]));
  }
  string(s: string): void {
    const b = Buffer.from(s, "utf8");
    this.u64(b.length);
    this.push(b);
  }
  bytes(b: Buffer): void {
    this.push(b);
  }
  padTo(alignment: number): void {
    const pad = (alignment - (this.length % alignment)) % alignment;
    if (pad > 0) this.push(Buffer.alloc(pad));
  }
  toBuffer(): Buffer {
    return Buffer.concat(this.chunks, this.length);
  }
}

/** Metadata key/values in insertion order (the order is part of the deterministic output). */
class GgufMetadata {
  readonly w = new ByteWriter();
  count = 0;

  private key(k: string, type: ValueType): void {
    this.w.string(k);
    this.w.u32(type);
    this.count++;
  }
  string(k: string, v: string): void {
    this.key(k, ValueType.STRING);
    this.w.string(v);
  }
  u32(k: string, v: number): void {
    this.key(k, ValueType.U32);
    this.w.u32(v);
  }
  f32(k: string, v: number): void {
    this.key(k, ValueType.F32);
    this.w.f32(v);
  }
  bool(k: string, v: boolean): void {
    this.key(k, ValueType.BOOL);
    this.w.u8(v ? 1 : 0);
  }
  stringArray(k: string, v: string[]): void {
    this.key(k, ValueType.ARRAY);
    this.w.u32(ValueType.STRING);
    this.w.u64(v.length);
    for (const s of v) this.w.string(s);
  }
  i32Array(k: string, v: number[]): void {
    this.key(k, ValueType.ARRAY);
    this.w.u32(ValueType.I32);
    this.w.u64(v.length);
    for (const x of v) this.w.i32(x);
  }
}

function encodeGguf(meta: GgufMetadata, tensors: Tensor[]): Buffer {
  const w = new ByteWriter();
  w.u32(GGUF_MAGIC);
  w.u32(GGUF_VERSION);
  w.u64(tensors.length);
  w.u64(meta.count);
  w.bytes(meta.w.toBuffer());
  // Tensor offsets are relative to the start of the data section and each is aligned.
  let offset = 0;
  for (const t of tensors) {
    w.string(t.name);
    w.u32(t.dims.length);
    for (const d of t.dims) w.u64(d);
    w.u32(t.q8 ? GGML_TYPE_Q8_0 : GGML_TYPE_F32);
    w.u64(offset);
    offset += align(tensorBytes(t));
  }
  w.padTo(ALIGNMENT);
  for (const t of tensors) {
    w.bytes(t.q8 ? quantizeQ8_0(t.data) : f32Bytes(t.data));
    w.padTo(ALIGNMENT);
  }
  return w.toBuffer();
}

function tensorBytes(t: Tensor): number {
  return t.q8 ? (t.data.length / Q8_0_BLOCK) * Q8_0_BLOCK_BYTES : t.data.length * 4;
}

function f32Bytes(data: Float32Array): Buffer {
  const b = Buffer.alloc(data.length * 4);
  for (let i = 0; i < data.length; i++) b.writeFloatLE(data[i] ?? 0, i * 4);
  return b;
}

/** llama.cpp's reference Q8_0 quantisation: per block of 32, d = max|x| / 127, q = round(x / d). */
export function quantizeQ8_0(data: Float32Array): Buffer {
  const blocks = data.length / Q8_0_BLOCK;
  const b = Buffer.alloc(blocks * Q8_0_BLOCK_BYTES);
  for (let k = 0; k < blocks; k++) {
    let amax = 0;
    for (let j = 0; j < Q8_0_BLOCK; j++) amax = Math.max(amax, Math.abs(data[k * Q8_0_BLOCK + j] ?? 0));
    const d = amax / 127;
    const id = d === 0 ? 0 : 1 / d;
    const at = k * Q8_0_BLOCK_BYTES;
    b.writeUInt16LE(toHalf(d), at);
    for (let j = 0; j < Q8_0_BLOCK; j++) b.writeInt8(Math.round((data[k * Q8_0_BLOCK + j] ?? 0) * id), at + 2 + j);
  }
  return b;
}

/** IEEE 754 binary16 bits of a finite float (round to nearest even; subnormals kept, overflow to infinity). */
export function toHalf(value: number): number {
  const f32 = new Float32Array([value]);
  const bits = new Uint32Array(f32.buffer)[0] ?? 0;
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = (mant | 0x800000) >>> (1 - e);
    const half = m >>> 13;
    const rest = m & 0x1fff;
    return sign | (half + (rest > 0x1000 || (rest === 0x1000 && half & 1) ? 1 : 0));
  }
  const half = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  return sign | (half + (rest > 0x1000 || (rest === 0x1000 && half & 1) ? 1 : 0));
}

function align(n: number): number {
  return Math.ceil(n / ALIGNMENT) * ALIGNMENT;
}
