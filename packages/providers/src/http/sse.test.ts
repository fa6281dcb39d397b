import { describe, expect, it } from "vitest";
import { readSse, type SseEvent, SseParser } from "./sse.js";

function parseAll(pieces: string[]): SseEvent[] {
  const out: SseEvent[] = [];
  const p = new SseParser((e) => out.push(e));
  for (const piece of pieces) p.feed(piece);
  return out;
}

describe("SseParser", () => {
  it("dispatches events on blank lines with their event name and data", () => {
    expect(parseAll(['event: message_start\ndata: {"a":1}\n\ndata: [DONE]\n\n'])).toEqual([
      { event: "message_start", data: '{"a":1}' },
      { event: "", data: "[DONE]" },
    ]);
  });

  it("handles CRLF and CR line ends, including a CRLF split across pieces", () => {
    expect(parseAll(["data: one\r", "\n\r", "\ndata: two\r\r"])).toEqual([
      { event: "", data: "one" },
      { event: "", data: "two" },
    ]);
  });

  it("joins multi-line data, ignores comments and strips one leading space only", () => {
    expect(parseAll([": keep-alive\n", "data:  x\ndata:y\n", "\n"])).toEqual([{ event: "", data: " x\ny" }]);
  });

  it("reassembles lines split at any byte", () => {
    const text = 'event: ping\ndata: {"type":"ping"}\n\ndata: hello\n\n';
    for (let cut = 1; cut < text.length; cut++) {
      expect(parseAll([text.slice(0, cut), text.slice(cut)])).toEqual([
        { event: "ping", data: '{"type":"ping"}' },
        { event: "", data: "hello" },
      ]);
    }
  });

  it("never emits an event whose blank line did not arrive", () => {
    expect(parseAll(["data: complete\n\ndata: partial\n"])).toEqual([{ event: "", data: "complete" }]);
  });

  it("resets the event name after each event", () => {
    expect(parseAll(["event: a\ndata: 1\n\ndata: 2\n\n"]).map((e) => e.event)).toEqual(["a", ""]);
  });
});

describe("readSse", () => {
  it("decodes UTF-8 split inside a multi-byte character", async () => {
    const bytes = Buffer.from("data: héllo ✓\n\n", "utf8");
    async function* body() {
      for (let i = 0; i < bytes.length; i++) yield bytes.subarray(i, i + 1);
    }
    const events: SseEvent[] = [];
    for await (const e of readSse(body())) events.push(e);
    expect(events).toEqual([{ event: "", data: "héllo ✓" }]);
  });
});
