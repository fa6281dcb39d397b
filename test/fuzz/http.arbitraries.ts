import fc from "fast-check";
import { nested, Pairs, RawJson, toJson } from "./json-text.js";

// Generators of hostile HTTP requests. Most are refused at the edge (bad framing, bad JSON, bad values, no key);
// the few that validate reach only cheap models (a fake upstream, or the tiny local one with max_tokens ≤ 3).

/** Lookalikes of real model names and other names that must not match anything. */
export const CONFUSABLES = [
  "gpt\u2010fake", // hyphen
  "g\u0440t-fake", // Cyrillic er
  "\uff47\uff50\uff54-fake", // fullwidth
  "gpt-fake\u200b",
  "\u202egpt-fake",
  "GPT-FAKE",
  "gpt-fake\u0000",
  "local-tiny ",
  "\u217cocal-tiny", // small roman numeral fifty
  "tiny\ufeff",
  "auto\u0301",
  "../local-tiny",
  "local-tiny/../gpt-fake",
  "%00",
  "*",
  "",
  " ",
];

const SPECIAL_STRINGS = [
  "\u0000",
  "\u0000\u0001\u0002\u001f\u007f",
  "\ud800",
  "\udfff\ud800",
  "\u202e\u2066evil\u2069",
  "\u2028\u2029\u0085",
  "\ufffe\uffff",
  "\r\n\r\ndata: [DONE]\n\n",
  "$" + "{jndi:ldap://127.0.0.1/x}",
  "'; DROP TABLE keys; --",
  "{{7*7}}",
  "corp.internal",
  "\u{1F600}".repeat(50),
  "Z\u0351\u0352\u0357\u034a\u0350\u0351".repeat(30),
];

/** Numbers as JSON text: past double range, past 2^53, negative zero, odd notations. */
const RAW_NUMBERS = [
  "1e999",
  "-1e999",
  "1e-999",
  "123456789012345678901234567890",
  "-0",
  "0.1e1",
  "9007199254740993",
  "4294967297",
  "1E+400",
  "-9223372036854775809",
  "0.000000000000000000000000000001",
];

// Large values are rare: a request holds a dozen strings, and the suite must send 10,000 requests in about a minute.
export const hostileString: fc.Arbitrary<string> = fc.oneof(
  { weight: 10, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 8, arbitrary: fc.string({ unit: "grapheme", maxLength: 40 }) },
  { weight: 8, arbitrary: fc.string({ unit: "binary", maxLength: 40 }) },
  { weight: 8, arbitrary: fc.constantFrom(...SPECIAL_STRINGS) },
  { weight: 5, arbitrary: fc.constantFrom(...CONFUSABLES) },
  { weight: 1, arbitrary: fc.integer({ min: 1_000, max: 100_000 }).map((n) => "A".repeat(n)) },
);

export const hostileNumber: fc.Arbitrary<unknown> = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.constantFrom(-1, 0, 0.5, 2 ** 31, 2 ** 53 + 2, -Number.MAX_VALUE, Number.MIN_VALUE),
  fc.constantFrom(...RAW_NUMBERS).map((t) => new RawJson(t)),
);

const deep: fc.Arbitrary<RawJson> = fc
  .tuple(fc.integer({ min: 1, max: 100_000 }), fc.constantFrom("array" as const, "object" as const))
  .map(([depth, kind]) => nested(depth, kind));

/** A value of any JSON type, including deep nesting and numbers out of range. */
export const anyValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 6, arbitrary: hostileString },
  { weight: 4, arbitrary: hostileNumber },
  { weight: 2, arbitrary: fc.boolean() },
  { weight: 2, arbitrary: fc.constant(null) },
  { weight: 4, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
  { weight: 1, arbitrary: deep },
);

/** Enum-looking strings that are not what the field allows. */
const badEnum: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom("", "User", "USER", "us\u0435r", "function", "root", "system\u0000", "json", "JSON_OBJECT", "xml"),
  fc.constantFrom("float32", "BASE64", "binary", "base64 ", "text\u200b", "json_schema\n", "none "),
  anyValue,
);

const unknownFields = fc.array(
  fc.tuple(
    fc.oneof(
      fc.constantFrom("__proto__", "constructor", "prototype", "toString", "hasOwnProperty", "model", "messages"),
      fc.string({ maxLength: 20 }),
    ),
    anyValue,
  ),
  { maxLength: 3 },
);

/** An object with some of its members replaced or duplicated by unknown ones (written in that order). */
function withUnknown(obj: fc.Arbitrary<Record<string, unknown>>): fc.Arbitrary<unknown> {
  return fc
    .tuple(obj, fc.option(unknownFields, { freq: 3, nil: undefined }))
    .map(([o, extra]) => (extra ? new Pairs([...Object.entries(o).filter(([, v]) => v !== undefined), ...extra]) : o));
}

/** Mostly `valid`, sometimes `hostile`; absent about half of the time. */
function field<T>(valid: fc.Arbitrary<T>, hostile: fc.Arbitrary<unknown>): fc.Arbitrary<unknown> {
  return fc.option(fc.oneof({ weight: 3, arbitrary: valid }, { weight: 1, arbitrary: hostile }), {
    nil: undefined,
    freq: 2,
  });
}

/** `n` copies of a small element, as one JSON text (too many to build as values). */
const manyCopies = (element: string, min: number, max: number) =>
  fc.integer({ min, max }).map((n) => new RawJson(`[${new Array(n).fill(element).join(",")}]`));

const contentPart = fc.oneof(
  fc.record({ type: fc.constant("text"), text: hostileString }),
  fc.record({
    type: fc.constant("image_url"),
    image_url: fc.record({
      url: fc.oneof(
        fc.constantFrom("data:image/png;base64,AAAA", "data:,", "http://127.0.0.1:9/x.png", "file:///etc/passwd"),
        hostileString,
      ),
      detail: field(fc.constantFrom("auto", "low", "high"), badEnum),
    }),
  }),
  fc.record({ type: badEnum, text: hostileString }),
  anyValue,
);

const toolCall = fc.record({
  id: field(fc.string({ maxLength: 8 }), anyValue),
  type: field(fc.constant("function"), badEnum),
  function: fc.oneof(
    fc.record({ name: fc.oneof(fc.constant("f"), hostileString), arguments: field(fc.constant("{}"), anyValue) }),
    anyValue,
  ),
});

const message = withUnknown(
  fc.record(
    {
      role: fc.oneof({ weight: 6, arbitrary: fc.constantFrom("user", "system", "developer", "assistant") }, badEnum),
      content: fc.oneof(
        { weight: 5, arbitrary: hostileString },
        { weight: 1, arbitrary: fc.array(contentPart, { maxLength: 3 }) },
        { weight: 1, arbitrary: fc.constant(null) },
        { weight: 1, arbitrary: anyValue },
      ),
      name: field(fc.string({ maxLength: 8 }), anyValue),
      tool_calls: field(fc.array(toolCall, { maxLength: 2 }), anyValue),
      tool_call_id: field(fc.string({ maxLength: 8 }), anyValue),
    },
    { requiredKeys: ["role", "content"] },
  ),
);

const messages = fc.oneof(
  { weight: 10, arbitrary: fc.array(message, { minLength: 1, maxLength: 3 }) },
  { weight: 1, arbitrary: fc.constant([]) },
  { weight: 1, arbitrary: manyCopies('{"role":"user","content":"x"}', 100, 10_000) },
  { weight: 1, arbitrary: anyValue },
);

const tool = fc.record({
  type: field(fc.constant("function"), badEnum),
  function: fc.oneof(
    {
      weight: 4,
      arbitrary: fc.record({
        name: fc.oneof(fc.constantFrom("get_weather", "f"), hostileString),
        description: field(hostileString, anyValue),
        parameters: field(fc.constant({ type: "object", properties: {} }), fc.oneof(deep, anyValue)),
      }),
    },
    { weight: 1, arbitrary: anyValue },
  ),
});

const responseFormat = fc.oneof(
  fc.constant({ type: "text" }),
  fc.constant({ type: "json_object" }),
  fc.record({
    type: fc.constant("json_schema"),
    json_schema: fc.oneof(
      fc.record({ name: fc.constant("x"), schema: field(fc.constant({ type: "object" }), fc.oneof(deep, anyValue)) }),
      anyValue,
    ),
  }),
  fc.record({ type: badEnum }),
  anyValue,
);

/** Models a valid request may name: all cheap (fake upstreams, or local-tiny with max_tokens ≤ 3). */
const CHAT_MODELS = ["gpt-fake", "gpt", "local-tiny", "tiny", "auto", "claude-fake", "flaky-with-fallback"];
const EMBED_MODELS = ["embed-fake", "local-embed"];

/** A chat completions body: known fields mostly valid, sometimes wrong; unknown fields now and then. */
export const chatBody: fc.Arbitrary<unknown> = withUnknown(
  fc.record(
    {
      model: fc.oneof(
        { weight: 4, arbitrary: fc.constantFrom(...CHAT_MODELS) },
        { weight: 1, arbitrary: fc.constantFrom(...CONFUSABLES, ...EMBED_MODELS) },
        { weight: 1, arbitrary: anyValue },
      ),
      messages,
      max_tokens: fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 1, max: 3 }) }, hostileNumber, anyValue),
      stream: field(fc.boolean(), anyValue),
      stream_options: field(fc.record({ include_usage: fc.boolean() }), anyValue),
      temperature: field(fc.double({ min: 0, max: 2, noNaN: true }), hostileNumber),
      top_p: field(fc.double({ min: 0, max: 1, noNaN: true }), hostileNumber),
      n: field(fc.constantFrom(1, 2), hostileNumber),
      stop: field(fc.oneof(hostileString, fc.array(hostileString, { maxLength: 4 })), anyValue),
      seed: field(fc.integer(), hostileNumber),
      tools: field(fc.array(tool, { maxLength: 2 }), fc.oneof(manyCopies('{"type":"function"}', 100, 5_000), anyValue)),
      tool_choice: field(fc.constantFrom("none", "auto", "required"), fc.oneof(badEnum, fc.record({ type: badEnum }))),
      response_format: field(responseFormat, badEnum),
      presence_penalty: field(fc.double({ min: -2, max: 2, noNaN: true }), hostileNumber),
      metadata: field(fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 })), anyValue),
      user: field(hostileString, anyValue),
    },
    { requiredKeys: ["model", "messages", "max_tokens"] },
  ),
);

/** An embeddings body. */
export const embeddingsBody: fc.Arbitrary<unknown> = withUnknown(
  fc.record(
    {
      model: fc.oneof(
        { weight: 4, arbitrary: fc.constantFrom(...EMBED_MODELS) },
        { weight: 1, arbitrary: fc.constantFrom(...CONFUSABLES, ...CHAT_MODELS) },
        { weight: 1, arbitrary: anyValue },
      ),
      input: fc.oneof(
        { weight: 4, arbitrary: hostileString },
        { weight: 2, arbitrary: fc.array(hostileString, { minLength: 1, maxLength: 4 }) },
        { weight: 1, arbitrary: manyCopies('"x"', 2_000, 10_000) },
        { weight: 1, arbitrary: fc.array(fc.integer(), { maxLength: 5 }) },
        { weight: 1, arbitrary: anyValue },
      ),
      encoding_format: field(fc.constantFrom("float", "base64"), badEnum),
      // Past 4096 the fake upstream (in this process) would build a vector that long; a real one refuses.
      dimensions: field(
        fc.integer({ min: 1, max: 64 }),
        hostileNumber.filter((v) => {
          const n = v instanceof RawJson ? Number(v.text) : v;
          return !(typeof n === "number" && Number.isInteger(n) && n > 4096);
        }),
      ),
      user: field(hostileString, anyValue),
    },
    { requiredKeys: ["model", "input"] },
  ),
);

const adminKeyBody = withUnknown(
  fc.record({
    name: field(fc.constantFrom("fuzz"), hostileString),
    team: field(fc.constantFrom("fuzz-team"), anyValue),
    user: field(fc.constantFrom("fuzz-user"), anyValue),
    models: field(fc.array(fc.constantFrom(...CHAT_MODELS), { maxLength: 2 }), anyValue),
    rpm: field(fc.nat(100), hostileNumber),
    tpm: field(fc.nat(100), hostileNumber),
  }),
);

// Budget ids never name the fuzzer's own key or team, so a budget set here cannot refuse the suite's requests.
const budgetBody = withUnknown(
  fc.record({
    scope: field(fc.constantFrom("key", "team", "user"), badEnum),
    id: field(fc.constantFrom("fuzz-budget-a", "fuzz-budget-b"), anyValue),
    period: field(fc.constantFrom("day", "month"), badEnum),
    limitUsd: field(fc.double({ min: 0, max: 100, noNaN: true }), hostileNumber),
    hard: field(fc.boolean(), anyValue),
    thresholds: field(fc.array(fc.double({ min: 0.1, max: 1, noNaN: true }), { maxLength: 3 }), anyValue),
  }),
);

/** How the body goes on the wire: as JSON, cut short, with bytes spliced in, or not JSON at all. */
export type Body =
  | { kind: "json"; value: unknown }
  | { kind: "truncated"; value: unknown; at: number }
  | { kind: "spliced"; value: unknown; at: number; bytes: Uint8Array }
  | { kind: "bytes"; bytes: Uint8Array }
  | { kind: "none" };

function body(value: fc.Arbitrary<unknown>): fc.Arbitrary<Body> {
  return fc.oneof(
    { weight: 12, arbitrary: value.map((v) => ({ kind: "json" as const, value: v })) },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant("truncated" as const),
        value,
        at: fc.double({ min: 0, max: 1, noNaN: true }),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant("spliced" as const),
        value,
        at: fc.double({ min: 0, max: 1, noNaN: true }),
        // Invalid UTF-8 among them: lone continuation bytes, overlong forms, 0xff, truncated sequences.
        bytes: fc.oneof(
          fc.uint8Array({ minLength: 1, maxLength: 8 }),
          fc.constantFrom(
            Uint8Array.of(0xc0, 0xaf),
            Uint8Array.of(0xff, 0xfe),
            Uint8Array.of(0xed, 0xa0, 0x80),
            Uint8Array.of(0xe2, 0x82),
            Uint8Array.of(0x80),
          ),
        ),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({ kind: fc.constant("bytes" as const), bytes: fc.uint8Array({ maxLength: 256 }) }),
    },
    { weight: 1, arbitrary: fc.constant({ kind: "none" as const }) },
  );
}

/** The bytes of a body. */
export function bodyBytes(b: Body): Buffer {
  switch (b.kind) {
    case "none":
      return Buffer.alloc(0);
    case "bytes":
      return Buffer.from(b.bytes);
    case "json":
      return Buffer.from(toJson(b.value));
    case "truncated": {
      const full = Buffer.from(toJson(b.value));
      return full.subarray(0, Math.floor(full.length * b.at));
    }
    case "spliced": {
      const full = Buffer.from(toJson(b.value));
      const at = Math.floor(full.length * b.at);
      return Buffer.concat([full.subarray(0, at), b.bytes, full.subarray(at)]);
    }
  }
}

/** Who the request claims to be. */
export type Auth = { kind: "key" } | { kind: "admin" } | { kind: "none" } | { kind: "raw"; value: Buffer };

const auth: fc.Arbitrary<Auth> = fc.oneof(
  { weight: 12, arbitrary: fc.constant({ kind: "key" as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: "none" as const }) },
  {
    weight: 2,
    arbitrary: fc
      .oneof(
        fc.constantFrom("Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "bearer tm-xyz", "Bearer tm-", "Bearer \u00e9"),
        fc.string({ maxLength: 60 }).map((s) => `Bearer ${s}`),
        fc.integer({ min: 1_000, max: 20_000 }).map((n) => `Bearer ${"k".repeat(n)}`),
        fc.uint8Array({ maxLength: 40 }).map((b) => `Bearer ${Buffer.from(b).toString("latin1")}`),
      )
      .map((v) => ({ kind: "raw" as const, value: Buffer.from(v, "latin1") })),
  },
);

const adminAuth: fc.Arbitrary<Auth> = fc.oneof(
  { weight: 6, arbitrary: fc.constant({ kind: "admin" as const }) },
  { weight: 1, arbitrary: auth },
);

/** Header values with odd bytes: controls, obs-text, NUL, giant ones. */
const headerValue: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 4, arbitrary: fc.string({ maxLength: 40 }).map((s) => Buffer.from(s)) },
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b)) },
  { weight: 1, arbitrary: fc.integer({ min: 4_000, max: 40_000 }).map((n) => Buffer.alloc(n, 0x61)) },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom("\u0000", "\r\nx-injected: 1", "\t \t", "\u00ff\u00fe", "a\rb", "a\nb")
      .map((s) => Buffer.from(s, "latin1")),
  },
);

const headerName: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom("x-request-id", "x-client-request-id", "accept", "accept-encoding", "user-agent", "expect", "host"),
  fc.constantFrom("x-forwarded-for", "origin", "cookie", "te", "upgrade", "x-http-method-override", "if-none-match"),
  fc.string({ unit: "binary-ascii", minLength: 1, maxLength: 20 }).filter(
    // Framing headers are the harness's: a wrong length would make the server wait for bytes that never come.
    (n) => !/^(content-length|transfer-encoding|connection)$/i.test(n.trim()),
  ),
);

const contentType = fc.oneof(
  { weight: 12, arbitrary: fc.constant("application/json") },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      "application/json; charset=utf-8",
      "APPLICATION/JSON",
      "application/json; charset=latin1",
      "text/plain",
      "multipart/form-data; boundary=x",
      "application/x-www-form-urlencoded",
      "application/jsonx",
      "*/*",
      "",
      "application/json\u00ff",
    ),
  },
  { weight: 1, arbitrary: fc.constant(undefined) },
);

/** One request as the fuzzer sends it. */
export interface HttpInput {
  method: string;
  path: string;
  auth: Auth;
  contentType: string | undefined;
  headers: readonly (readonly [string, Buffer])[];
  body: Body;
  chunked: boolean;
}

const extraHeaders = fc.array(fc.tuple(headerName, headerValue), { maxLength: 3 });

function request(
  method: fc.Arbitrary<string>,
  path: fc.Arbitrary<string>,
  b: fc.Arbitrary<Body>,
  who: fc.Arbitrary<Auth> = auth,
): fc.Arbitrary<HttpInput> {
  return fc.record({
    method,
    path,
    auth: who,
    contentType,
    headers: fc.oneof({ weight: 5, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: extraHeaders }),
    body: b,
    chunked: fc.oneof({ weight: 5, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
  });
}

const query = fc
  .array(fc.tuple(fc.constantFrom("scope", "id", "period", "keyId", "team", "start", "end", "x"), hostileString), {
    maxLength: 4,
  })
  .map((kv) => (kv.length ? `?${kv.map(([k, v]) => `${k}=${encodeURIComponent(v.toWellFormed())}`).join("&")}` : ""));

const oddPath = fc.oneof(
  fc.constantFrom(
    "/v1/chat/completions/",
    "/v1//chat/completions",
    "//v1/models",
    "/V1/MODELS",
    "/v1/models/../../admin/keys",
    "/%2e%2e/admin/keys",
    "/v1/%zz",
    "/v1/models;x",
    "/v1/chat/completions#frag",
    "/v1/models?%",
    "*",
    "http://evil.example/v1/models",
    "/admin",
    "/admin/",
    "/admin/keys/",
    "/admin/keys/%00",
    "/metrics/../admin/keys",
    "/readyz?x=\u00ff",
    "/v1/chat/completions\u0000",
    "/v1/messages",
    "/v1/jobs",
    "/v1/jobs/%00",
    "/v1/ch\u00e4t",
    "/ v1/models",
  ),
  fc.integer({ min: 100, max: 30_000 }).map((n) => `/v1/${"a".repeat(n)}`),
  fc.string({ unit: "binary", maxLength: 30 }).map((s) => `/v1/${s}`),
  fc.string({ unit: "binary-ascii", maxLength: 30 }).map((s) => `/admin/keys/${s}`),
  fc.integer({ min: 90, max: 5_000 }).map((n) => `/admin/keys/${"k".repeat(n)}`),
);

const oddMethod = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS") },
  { weight: 1, arbitrary: fc.constantFrom("TRACE", "FOO", "get", "PROPFIND", "M-SEARCH", "PRI", "POST ", "G\u00c9T") },
);

const anyBody = body(anyValue);

/** Every kind of hostile HTTP request, weighted towards the API's JSON bodies. */
export const httpInput: fc.Arbitrary<HttpInput> = fc.oneof(
  { weight: 10, arbitrary: request(fc.constant("POST"), fc.constant("/v1/chat/completions"), body(chatBody)) },
  { weight: 4, arbitrary: request(fc.constant("POST"), fc.constant("/v1/embeddings"), body(embeddingsBody)) },
  {
    weight: 1,
    arbitrary: request(fc.constantFrom("GET", "HEAD"), fc.constantFrom("/v1/models", "/v1/models?x=1"), anyBody),
  },
  { weight: 1, arbitrary: request(fc.constant("POST"), fc.constant("/admin/keys"), body(adminKeyBody), adminAuth) },
  { weight: 1, arbitrary: request(fc.constant("PUT"), fc.constant("/admin/budgets"), body(budgetBody), adminAuth) },
  {
    weight: 1,
    arbitrary: request(
      fc.constantFrom("GET", "DELETE"),
      fc.oneof(
        query.map((q) => `/admin/budgets${q}`),
        query.map((q) => `/admin/usage${q}`),
        fc.string({ maxLength: 30 }).map((id) => `/admin/keys/${encodeURIComponent(id.toWellFormed())}`),
        fc.constant("/admin/keys"),
      ),
      anyBody,
      adminAuth,
    ),
  },
  { weight: 3, arbitrary: request(oddMethod, oddPath, anyBody, fc.oneof(auth, adminAuth)) },
);

/** The exact request bytes; `Connection: close` comes first so no injected header can keep the socket open. */
export function renderHttp(input: HttpInput, secrets: { key: string; admin: string }): Buffer {
  const b = bodyBytes(input.body);
  const lines: Buffer[] = [
    Buffer.from(`${input.method} `, "latin1"),
    Buffer.from(input.path, "utf8"),
    Buffer.from(" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n", "latin1"),
  ];
  const header = (name: string, value: Buffer) =>
    lines.push(Buffer.from(`${name}: `, "latin1"), value, Buffer.from("\r\n", "latin1"));
  if (input.auth.kind === "key") header("Authorization", Buffer.from(`Bearer ${secrets.key}`));
  if (input.auth.kind === "admin") header("Authorization", Buffer.from(`Bearer ${secrets.admin}`));
  if (input.auth.kind === "raw") header("Authorization", input.auth.value);
  if (input.contentType !== undefined) header("Content-Type", Buffer.from(input.contentType, "latin1"));
  for (const [name, value] of input.headers) header(name, value);
  if (input.chunked) {
    lines.push(Buffer.from("Transfer-Encoding: chunked\r\n\r\n", "latin1"));
    if (b.length > 0) lines.push(Buffer.from(`${b.length.toString(16)}\r\n`, "latin1"), b, Buffer.from("\r\n"));
    lines.push(Buffer.from("0\r\n\r\n", "latin1"));
  } else {
    lines.push(Buffer.from(`Content-Length: ${b.length}\r\n\r\n`, "latin1"), b);
  }
  return Buffer.concat(lines);
}

/** A short description of a request for a counterexample report (bodies can be megabytes). */
export function describeHttp(input: HttpInput, bytes: Buffer): string {
  const text = bytes.toString("latin1");
  const preview = text.length > 600 ? `${text.slice(0, 600)}… (${bytes.length} bytes)` : text;
  return `${input.method} ${input.path.slice(0, 200)}\n${JSON.stringify(preview)}`;
}
