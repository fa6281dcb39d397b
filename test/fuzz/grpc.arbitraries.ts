import { ChatRequest, EmbedRequest } from "@tokenmesh/proto/common/v1/chat";
import fc from "fast-check";
import { CONFUSABLES, hostileString } from "./http.arbitraries.js";

// Generators of hostile gRPC calls to the front door: request messages that are garbage, cut short, corrupted,
// deeply nested, or well-formed with values the HTTP API's schema would never let through (enum values out of
// range, negative or huge counts, NaN), with odd metadata.

const SERVICE = "/tokenmesh.gateway.v1.GatewayService";

const int32 = fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 });

/** A protobuf varint. */
function varint(n: bigint): Buffer {
  const out: number[] = [];
  let v = BigInt.asUintN(64, n);
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return Buffer.from(out);
}

const tag = (field: number, wire: number) => varint(BigInt((field << 3) | wire));
/** A length-delimited field. */
const ld = (field: number, bytes: Buffer) => Buffer.concat([tag(field, 2), varint(BigInt(bytes.length)), bytes]);

/** Bytes of `n` (< 2^53) as a varint. */
const varintLength = (n: number): number => (n < 0x80 ? 1 : 1 + varintLength(Math.floor(n / 0x80)));

/** Writes `n` as a varint at `at`; returns the position after it. */
function writeVarint(out: Buffer, at: number, n: number): number {
  while (n >= 0x80) {
    out[at++] = (n % 0x80) | 0x80;
    n = Math.floor(n / 0x80);
  }
  out[at++] = n;
  return at;
}

/**
 * `google.protobuf.Value` nested `depth` times through `list_value`, written outside-in into one buffer (building
 * it inside-out by concatenation would be quadratic).
 */
function deepValue(depth: number): Buffer {
  const lists = [0]; // lists[i]: size of the ListValue inside the Value of level i
  const sizes = [9]; // sizes[i]: size of the Value of level i; level 0 is number_value (tag + 8-byte double)
  for (let i = 1; i <= depth; i++) {
    lists.push(1 + varintLength(sizes[i - 1]!) + sizes[i - 1]!);
    sizes.push(1 + varintLength(lists[i]!) + lists[i]!);
  }
  const out = Buffer.alloc(sizes[depth]!);
  let at = 0;
  for (let i = depth; i >= 1; i--) {
    out[at++] = 0x32; // Value.list_value
    at = writeVarint(out, at, lists[i]!);
    out[at++] = 0x0a; // ListValue.values
    at = writeVarint(out, at, sizes[i - 1]!);
  }
  out[at++] = 0x11; // Value.number_value
  out.writeDoubleLE(1, at);
  return out;
}

/** Raw fields appended to a message (protobuf merges them): the values no encoder would write. */
const extraField: fc.Arbitrary<Buffer> = fc.oneof(
  // max_tokens (9) and n (12) as 10-byte varints: -1, 2^63, 2^32 + 1
  fc
    .tuple(fc.constantFrom(9, 12, 11), fc.constantFrom(-1n, 2n ** 63n, 2n ** 32n + 1n, 2n ** 31n))
    .map(([f, v]) => Buffer.concat([tag(f, 0), varint(v)])),
  // model (1) and user (13) as invalid UTF-8
  fc
    .tuple(fc.constantFrom(1, 13), fc.uint8Array({ minLength: 1, maxLength: 16 }))
    .map(([f, b]) => ld(f, Buffer.concat([Buffer.from([0xff, 0xc0, 0xaf]), b]))),
  // a message (2) whose role (1) is out of the enum, content (2) invalid UTF-8
  fc
    .tuple(fc.integer({ min: 6, max: 2 ** 31 - 1 }), fc.uint8Array({ maxLength: 8 }))
    .map(([role, b]) =>
      ld(2, Buffer.concat([tag(1, 0), varint(BigInt(role)), ld(2, Buffer.from([0xed, 0xa0, 0x80, ...b]))])),
    ),
  // response_format (6) type (1) out of the enum
  fc.integer({ min: 4, max: 1000 }).map((t) => ld(6, Buffer.concat([tag(1, 0), varint(BigInt(t))]))),
  // tools (3): a function whose parameters Struct holds a Value nested `depth` deep
  fc
    .integer({ min: 10, max: 100_000 })
    .map((depth) =>
      ld(
        3,
        ld(
          2,
          Buffer.concat([
            ld(1, Buffer.from("f")),
            ld(3, ld(1, Buffer.concat([ld(1, Buffer.from("a")), ld(2, deepValue(depth))]))),
          ]),
        ),
      ),
    ),
  // an unknown field in every wire type, and nested start-groups
  fc
    .integer({ min: 1, max: 50_000 })
    .map((d) => Buffer.concat([...Array(d).fill(tag(99, 3)), ...Array(d).fill(tag(99, 4))])),
  fc
    .tuple(fc.integer({ min: 19, max: 536_870_911 }), fc.constantFrom(0, 1, 2, 5, 6, 7))
    .map(([f, w]) => Buffer.concat([tag(f, w), w === 2 ? varint(3n) : Buffer.alloc(0), Buffer.alloc(8, 1)])),
);

const CHAT_MODELS = ["gpt-fake", "local-tiny", "tiny", "auto", "claude-fake"];

const chatRequest = fc.record(
  {
    model: fc.oneof(
      { weight: 6, arbitrary: fc.constantFrom(...CHAT_MODELS) },
      fc.constantFrom(...CONFUSABLES),
      hostileString,
    ),
    messages: fc.array(
      fc.record(
        {
          role: fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 1, max: 5 }) }, int32),
          content: hostileString,
          parts: fc.array(
            fc.oneof(
              fc.record({ text: hostileString }),
              fc.record({ imageUrl: fc.record({ url: hostileString, detail: hostileString }) }),
            ),
            { maxLength: 2 },
          ),
          name: hostileString,
        },
        { requiredKeys: ["role", "content"] },
      ),
      { maxLength: 3 },
    ),
    maxTokens: fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 1, max: 3 }) }, int32),
    // Past 128 the fake upstream (in this process) would build that many choices; a real one refuses. The gRPC door
    // passing such an `n` on unchecked is reported, not fuzzed.
    n: fc.oneof({ weight: 8, arbitrary: fc.constantFrom(0, 1, 2) }, fc.integer({ min: -(2 ** 31), max: 128 })),
    temperature: fc.double(),
    topP: fc.double(),
    presencePenalty: fc.double(),
    stop: fc.array(hostileString, { maxLength: 6 }),
    seed: fc.maxSafeInteger(),
    user: hostileString,
    metadata: fc.dictionary(hostileString, hostileString, { maxKeys: 3 }),
    responseFormat: fc.record({ type: fc.oneof(fc.integer({ min: 0, max: 3 }), int32) }),
    toolChoice: fc.oneof(
      fc.record({ mode: fc.oneof(fc.integer({ min: 0, max: 3 }), int32) }),
      fc.record({ functionName: hostileString }),
    ),
    tools: fc.array(
      fc.record({
        type: fc.oneof(fc.constant("function"), hostileString),
        function: fc.record({
          name: hostileString,
          description: hostileString,
          parameters: fc.constant({ type: "object" }),
        }),
      }),
      { maxLength: 2 },
    ),
    streamOptions: fc.record({ includeUsage: fc.boolean() }),
  },
  { requiredKeys: ["model", "messages", "maxTokens"] },
);

const embedRequest = fc.record(
  {
    model: fc.oneof(
      { weight: 6, arbitrary: fc.constantFrom("embed-fake", "local-embed") },
      fc.constantFrom(...CONFUSABLES),
      hostileString,
    ),
    input: fc.oneof(
      { weight: 6, arbitrary: fc.array(hostileString, { maxLength: 4 }) },
      { weight: 1, arbitrary: fc.integer({ min: 2_000, max: 10_000 }).map((n) => new Array<string>(n).fill("x")) },
    ),
    user: hostileString,
    // Past 4096 the fake upstream would build a vector that long (a real one refuses); the local engine checks.
    dimensions: fc.oneof(fc.integer({ min: 1, max: 64 }), fc.integer({ min: -(2 ** 31), max: 4096 })),
  },
  { requiredKeys: ["model", "input"] },
);

/** A well-formed message, with raw fields appended now and then. */
function encoded(message: fc.Arbitrary<Buffer>): fc.Arbitrary<Buffer> {
  return fc
    .tuple(message, fc.option(fc.array(extraField, { minLength: 1, maxLength: 2 }), { freq: 3, nil: undefined }))
    .map(([m, extra]) => (extra ? Buffer.concat([m, ...extra]) : m));
}

const chatBytes = encoded(chatRequest.map((r) => Buffer.from(ChatRequest.encode(ChatRequest.fromPartial(r)).finish())));
const embedBytes = encoded(
  embedRequest.map((r) => Buffer.from(EmbedRequest.encode(EmbedRequest.fromPartial(r)).finish())),
);

/** A message corrupted: cut short, or with bytes overwritten. */
function corrupted(message: fc.Arbitrary<Buffer>): fc.Arbitrary<Buffer> {
  return fc.oneof(
    fc
      .tuple(message, fc.double({ min: 0, max: 1, noNaN: true }))
      .map(([m, f]) => m.subarray(0, Math.floor(m.length * f))),
    fc
      .tuple(
        message,
        fc.array(fc.tuple(fc.double({ min: 0, max: 1, noNaN: true }), fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 4,
        }),
      )
      .map(([m, flips]) => {
        const out = Buffer.from(m);
        for (const [at, byte] of flips)
          if (out.length > 0) out[Math.min(out.length - 1, Math.floor(at * out.length))] = byte;
        return out;
      }),
  );
}

const garbage = fc.uint8Array({ maxLength: 512 }).map((b) => Buffer.from(b));

/** Who the call claims to be. */
export type GrpcAuth = "key" | "admin" | "none" | { raw: string };

/** One call as the fuzzer makes it. */
export interface GrpcInput {
  method: string;
  stream: boolean;
  message: Buffer;
  auth: GrpcAuth;
  metadata: readonly (readonly [string, string | Buffer])[];
}

const printable = (max: number) =>
  fc.string({ unit: "binary-ascii", maxLength: max }).map((s) => s.replace(/[^\x20-\x7e]/g, "?"));

const metadataEntry: fc.Arbitrary<[string, string | Buffer]> = fc.oneof(
  fc.tuple(
    fc.constantFrom("x-request-id", "x-client-request-id", "user-agent", "traceparent", "tracestate", "baggage"),
    printable(60),
  ),
  fc.tuple(
    fc.stringMatching(/^[a-z0-9_.-]{1,20}$/).filter((k) => !k.startsWith("grpc-") && !k.endsWith("-bin")),
    printable(60),
  ),
  fc.tuple(
    fc.constantFrom("x-request-id", "x-big"),
    fc.integer({ min: 4_000, max: 40_000 }).map((n) => "v".repeat(n)),
  ),
  fc.tuple(
    fc.constantFrom("x-data-bin", "traceparent-bin"),
    fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
  ),
);

const auth: fc.Arbitrary<GrpcAuth> = fc.oneof(
  { weight: 12, arbitrary: fc.constant("key" as const) },
  { weight: 1, arbitrary: fc.constantFrom("none" as const, "admin" as const) },
  { weight: 2, arbitrary: printable(80).map((s) => ({ raw: s.startsWith("B") ? s : `Bearer ${s}` })) },
);

const method = (name: string, stream = false) => fc.constant({ method: `${SERVICE}/${name}`, stream });

const call = (m: fc.Arbitrary<{ method: string; stream: boolean }>, message: fc.Arbitrary<Buffer>) =>
  fc
    .record({
      m,
      message,
      auth,
      metadata: fc.oneof(
        { weight: 5, arbitrary: fc.constant([]) },
        { weight: 1, arbitrary: fc.array(metadataEntry, { maxLength: 3 }) },
      ),
    })
    .map(({ m: { method, stream }, ...rest }): GrpcInput => ({ method, stream, ...rest }));

const chatMethod = fc.oneof(method("Chat"), method("ChatStream", true));
const anyMethod = fc.oneof(
  chatMethod,
  method("Embed"),
  method("ListModels"),
  fc.constantFrom("Nope", "chat", "Chat/", "").map((n) => ({ method: `${SERVICE}/${n}`, stream: false })),
  fc.constantFrom("/tokenmesh.router.v1.RouterService/Route", "/x/y").map((p) => ({ method: p, stream: false })),
);

/** Every kind of hostile gRPC call, weighted towards the chat and embeddings messages. */
export const grpcInput: fc.Arbitrary<GrpcInput> = fc.oneof(
  { weight: 6, arbitrary: call(chatMethod, chatBytes) },
  { weight: 3, arbitrary: call(chatMethod, corrupted(chatBytes)) },
  { weight: 2, arbitrary: call(method("Embed"), embedBytes) },
  { weight: 1, arbitrary: call(method("Embed"), corrupted(embedBytes)) },
  { weight: 2, arbitrary: call(anyMethod, garbage) },
  { weight: 1, arbitrary: call(anyMethod, fc.oneof(chatBytes, embedBytes)) },
);

/** A short description of a call for a counterexample report. */
export function describeGrpc(input: GrpcInput): string {
  const hex = input.message.subarray(0, 300).toString("hex");
  return `${input.method} (${input.message.length} bytes: ${hex}${input.message.length > 300 ? "…" : ""}) auth=${JSON.stringify(input.auth)} metadata=${input.metadata.map(([k, v]) => `${k}:${v.length}`).join(",")}`;
}
