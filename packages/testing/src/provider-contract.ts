/**
 * The contract every model engine keeps, written once as a vitest suite (TensorZero style): a new provider is a new
 * row, not a new test file. Rows are the remote engines of `@tokenmesh/providers` against the fake upstreams, and
 * the local GGUF engine of services/inference. A case that cannot apply to an engine is skipped with the reason
 * stated in the row (and printed in the test title), never by omission: every case not skipped must pass.
 */
import { type ChatChunk, ChatRequest, FinishReason, Role, ToolChoiceMode } from "@tokenmesh/proto/common/v1/chat";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";

/** The cases of the contract, by id, with what each one asserts. */
export const CONTRACT_CASES = {
  chat: "answers a non-streamed request; the last chunk carries usage",
  chatOneChunk: "answers a non-streamed request as one chunk carrying its usage",
  stream: "streams role, text and a finish reason, then ends with a usage-only chunk",
  tools: "returns tool calls whose deltas fold into an id, a name and JSON arguments (streamed and not)",
  rateLimited: "maps 429 to RESOURCE_EXHAUSTED, retryable, with retryAfterMs",
  unavailable: "maps 5xx to UNAVAILABLE, retryable",
  unauthorized: "maps 401 to PERMISSION_DENIED, not retryable",
  invalid: "maps 400 (a request the model refuses) to INVALID_ARGUMENT, not retryable",
  cancel: "aborting the signal mid-stream throws CANCELLED and stops the upstream work",
  cut: "a stream cut mid-way throws UNAVAILABLE (retryable) and never ends cleanly",
  truncated: "a stream that ends cleanly but without its terminator throws UNAVAILABLE",
} as const;

export type ContractCase = keyof typeof CONTRACT_CASES;

/** The failures a row is asked to provoke, by the HTTP status a provider would answer with. */
export type ContractFailure = 400 | 401 | 429 | 503 | "cut" | "truncate";

/** One engine under the contract, as its row sets it up. */
export interface ContractSubject {
  /** Runs `request` on the row's model (the engine's own `generate`, `model` already chosen by the row). */
  generate(request: ChatRequest, signal: AbortSignal): AsyncIterable<ChatChunk>;
  /**
   * Arranges the next call to fail this way and returns what to merge into its request (a fake upstream is told
   * through its behaviour; an engine without one makes the request itself invalid). Only called for cases the row
   * does not skip.
   */
  provoke(failure: ContractFailure): Partial<ChatRequest>;
  /** Arranges the next call to stream slowly enough for a cancel to land mid-stream. */
  slow?(): void;
  /**
   * Resolves once the work of the last (cancelled) call has stopped, rejecting or timing out if it goes on: a fake
   * upstream saw the client close the connection; a local engine freed its slot.
   */
  stopped(): Promise<void>;
  /** Restores normal behaviour between cases. */
  reset(): void;
  close(): Promise<void>;
}

export interface ContractRow {
  /** The engine, as the test titles name it ("openai", "anthropic", "local"). */
  name: string;
  /** Why a case does not apply to this engine. Every case not listed runs and must pass. */
  skip?: Partial<Record<ContractCase, string>>;
  setup(): Promise<ContractSubject>;
}

const WEATHER_TOOL = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Weather for a city",
    parameters: {
      type: "object",
      properties: { city: { type: "string" }, unit: { type: "string", enum: ["c", "f"] } },
      required: ["city"],
    },
    strict: false,
  },
};

function chat(text: string, extra: Partial<ChatRequest> = {}): ChatRequest {
  return ChatRequest.fromPartial({
    messages: [
      { role: Role.ROLE_SYSTEM, content: "Be brief." },
      { role: Role.ROLE_USER, content: text },
    ],
    maxTokens: 16,
    ...extra,
  });
}

async function collect(
  subject: ContractSubject,
  request: ChatRequest,
  signal = new AbortController().signal,
): Promise<ChatChunk[]> {
  const out: ChatChunk[] = [];
  for await (const c of subject.generate(request, signal)) out.push(c);
  return out;
}

/** Runs the call to its end and returns what it threw, with the chunks seen before; fails if it ended cleanly. */
async function failure(
  run: (seen: ChatChunk[]) => Promise<unknown>,
): Promise<{ error: Record<string, unknown>; seen: ChatChunk[] }> {
  const seen: ChatChunk[] = [];
  try {
    await run(seen);
  } catch (error) {
    return { error: error as Record<string, unknown>, seen };
  }
  throw new Error(`expected the call to fail; it ended cleanly after ${seen.length} chunks`);
}

/** Folds chunks into the answer a client would see (choice 0). */
function fold(chunks: ChatChunk[]) {
  let content = "";
  let finish = FinishReason.FINISH_REASON_UNSPECIFIED;
  const tools: Array<{ id: string; name: string; arguments: string }> = [];
  for (const c of chunks) {
    for (const d of c.choices) {
      if (d.index !== 0) continue;
      content += d.content;
      if (d.finishReason !== FinishReason.FINISH_REASON_UNSPECIFIED) finish = d.finishReason;
      for (const t of d.toolCalls) {
        tools[t.index] ??= { id: "", name: "", arguments: "" };
        const slot = tools[t.index]!;
        if (t.id) slot.id = t.id;
        if (t.function?.name) slot.name = t.function.name;
        slot.arguments += t.function?.arguments ?? "";
      }
    }
  }
  return { content, finish, tools };
}

function expectUsageLast(chunks: ChatChunk[]): void {
  const last = chunks.at(-1);
  expect(last?.usage).toBeDefined();
  expect(last!.usage!.inputTokens).toBeGreaterThan(0);
  expect(last!.usage!.outputTokens).toBeGreaterThan(0);
  // Usage comes once, at the end: the router and the gateway account on the last chunk.
  expect(chunks.slice(0, -1).some((c) => c.usage !== undefined)).toBe(false);
}

/**
 * Declares the contract suite for `rows`: one `describe` per row, one test per case. Skipped cases appear as
 * skipped tests titled with their reason. Runs in the integration project (rows may start servers or load models).
 */
export function providerContractSuite(rows: readonly ContractRow[]): void {
  for (const row of rows) {
    for (const id of Object.keys(row.skip ?? {})) {
      if (!(id in CONTRACT_CASES)) throw new Error(`row ${row.name} skips an unknown contract case "${id}"`);
    }
    describe(`provider contract: ${row.name}`, () => {
      let subject: ContractSubject;
      beforeAll(async () => {
        subject = await row.setup();
      });
      afterAll(async () => {
        await subject?.close();
      });
      beforeEach(() => subject.reset());

      const test = (id: ContractCase, fn: () => Promise<void>): void => {
        const reason = row.skip?.[id];
        if (reason !== undefined) it.skip(`${CONTRACT_CASES[id]} — n/a: ${reason}`, fn);
        else it(CONTRACT_CASES[id], fn);
      };

      test("chat", async () => {
        const chunks = await collect(subject, chat("hello there world", { stream: false }));
        const answer = fold(chunks);
        expect(answer.content.length).toBeGreaterThan(0);
        expect([FinishReason.FINISH_REASON_STOP, FinishReason.FINISH_REASON_LENGTH]).toContain(answer.finish);
        expectUsageLast(chunks);
      });

      test("chatOneChunk", async () => {
        const chunks = await collect(subject, chat("one two", { stream: false }));
        expect(chunks).toHaveLength(1);
        expect(chunks[0]!.choices[0]!.role).toBe(Role.ROLE_ASSISTANT);
        expect(fold(chunks).content).toBe("one two");
        expectUsageLast(chunks);
      });

      test("stream", async () => {
        const chunks = await collect(subject, chat("hello there world", { stream: true }));
        expect(chunks.length).toBeGreaterThanOrEqual(3);
        expect(chunks[0]!.choices[0]!.role).toBe(Role.ROLE_ASSISTANT);
        const answer = fold(chunks);
        expect(answer.content.length).toBeGreaterThan(0);
        expect([FinishReason.FINISH_REASON_STOP, FinishReason.FINISH_REASON_LENGTH]).toContain(answer.finish);
        expect(chunks.at(-1)!.choices).toEqual([]);
        expectUsageLast(chunks);
      });

      test("tools", async () => {
        for (const stream of [true, false]) {
          const chunks = await collect(
            subject,
            chat("what is the weather? use get_weather", {
              stream,
              tools: [WEATHER_TOOL],
              toolChoice: { mode: ToolChoiceMode.TOOL_CHOICE_MODE_REQUIRED },
              maxTokens: 64,
            }),
          );
          const answer = fold(chunks);
          expect(answer.finish).toBe(FinishReason.FINISH_REASON_TOOL_CALLS);
          expect(answer.tools).toHaveLength(1);
          expect(answer.tools[0]!.id).not.toBe("");
          expect(answer.tools[0]!.name).toBe("get_weather");
          expect(JSON.parse(answer.tools[0]!.arguments)).toMatchObject({ city: expect.any(String) });
          expectUsageLast(chunks);
        }
      });

      const mapsStatus = (
        id: ContractCase,
        status: 400 | 401 | 429 | 503,
        code: string,
        retryable: boolean,
        extra: (error: Record<string, unknown>) => void = () => undefined,
      ) =>
        test(id, async () => {
          for (const stream of [true, false]) {
            const overrides = subject.provoke(status);
            const { error } = await failure((seen) =>
              (async () => {
                for await (const c of subject.generate(
                  chat("hi", { stream, ...overrides }),
                  new AbortController().signal,
                ))
                  seen.push(c);
              })(),
            );
            expect(error).toMatchObject({ code, retryable });
            extra(error);
          }
        });
      mapsStatus("rateLimited", 429, "RESOURCE_EXHAUSTED", true, (e) => {
        expect(e.retryAfterMs).toBeGreaterThan(0);
        expect(e.origin).toBe("upstream");
      });
      mapsStatus("unavailable", 503, "UNAVAILABLE", true, (e) => expect(e.origin).toBe("upstream"));
      mapsStatus("unauthorized", 401, "PERMISSION_DENIED", false);
      mapsStatus("invalid", 400, "INVALID_ARGUMENT", false);

      test("cancel", async () => {
        subject.slow?.();
        const controller = new AbortController();
        const { error, seen } = await failure((out) =>
          (async () => {
            for await (const c of subject.generate(
              chat("a b c d e f g h i j k l m n o p", { stream: true, maxTokens: 2000 }),
              controller.signal,
            )) {
              out.push(c);
              if (out.length === 1) controller.abort();
            }
          })(),
        );
        expect(error).toMatchObject({ code: "CANCELLED" });
        expect(seen.some((c) => c.usage !== undefined)).toBe(false);
        await subject.stopped();
      });

      const broken = (id: ContractCase, how: "cut" | "truncate") =>
        test(id, async () => {
          for (const stream of how === "cut" ? [true, false] : [true]) {
            const overrides = subject.provoke(how);
            const { error, seen } = await failure((out) =>
              (async () => {
                for await (const c of subject.generate(
                  chat("one two three four five six", { stream, ...overrides }),
                  new AbortController().signal,
                ))
                  out.push(c);
              })(),
            );
            expect(error).toMatchObject({ code: "UNAVAILABLE", retryable: true });
            // A broken answer never looks complete: no usage chunk reached the caller.
            expect(seen.some((c) => c.usage !== undefined)).toBe(false);
          }
        });
      broken("cut", "cut");
      broken("truncated", "truncate");
    });
  }
}
