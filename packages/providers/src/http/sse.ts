/** One server-sent event, as dispatched by the WHATWG event-stream rules. */
export interface SseEvent {
  /** The `event:` field; "" when absent (the spec's default type is "message"). */
  event: string;
  /** The `data:` lines joined with "\n". */
  data: string;
}

const LF = 10;
const CR = 13;

/**
 * An incremental event-stream parser: feed it text in arbitrary pieces and it calls `emit` once per complete event
 * (terminated by a blank line). Handles LF, CRLF and CR line ends, including a CRLF split across pieces, `:` comments,
 * a single optional space after the colon, and multi-line data. An event not yet terminated when the input ends is
 * never emitted (per the spec), which is how a cut stream is told from a finished one.
 */
export class SseParser {
  private buffer = "";
  private data: string[] = [];
  private event = "";
  /** The previous piece ended with CR: a leading LF in the next one belongs to the same line end. */
  private pendingCr = false;

  constructor(private readonly emit: (event: SseEvent) => void) {}

  feed(text: string): void {
    let lineStart = 0;
    if (this.pendingCr) {
      // pendingCr implies the buffer is empty: the CR ended the last line.
      this.pendingCr = false;
      if (text.charCodeAt(0) === LF) lineStart = 1;
    }
    const buf = this.buffer === "" ? text : this.buffer + text;
    for (let i = lineStart; i < buf.length; i++) {
      const c = buf.charCodeAt(i);
      if (c !== LF && c !== CR) continue;
      this.line(buf.slice(lineStart, i));
      if (c === CR) {
        if (i + 1 === buf.length) this.pendingCr = true;
        else if (buf.charCodeAt(i + 1) === LF) i++;
      }
      lineStart = i + 1;
    }
    this.buffer = lineStart >= buf.length ? "" : buf.slice(lineStart);
  }

  private line(line: string): void {
    if (line === "") {
      if (this.data.length > 0) {
        const event: SseEvent = {
          event: this.event,
          data: this.data.length === 1 ? this.data[0]! : this.data.join("\n"),
        };
        this.data = [];
        this.event = "";
        this.emit(event);
      } else {
        this.event = "";
      }
      return;
    }
    const colon = line.indexOf(":");
    if (colon === 0) return; // comment (e.g. OpenRouter's ": OPENROUTER PROCESSING" keep-alives)
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.event = value;
    // id and retry only matter to reconnecting EventSource clients; we never reconnect a generation.
  }
}

/**
 * Reads server-sent events from a byte stream (UTF-8, multi-byte characters split across chunks are handled).
 * Ends when the byte stream ends; errors from the byte stream propagate unchanged.
 */
export async function* readSse(body: AsyncIterable<Uint8Array | string>): AsyncGenerator<SseEvent> {
  const decoder = new TextDecoder("utf-8");
  const queue: SseEvent[] = [];
  const parser = new SseParser((e) => queue.push(e));
  for await (const chunk of body) {
    parser.feed(typeof chunk === "string" ? chunk : decoder.decode(chunk, { stream: true }));
    if (queue.length > 0) {
      for (const e of queue) yield e;
      queue.length = 0;
    }
  }
  const tail = decoder.decode();
  if (tail !== "") parser.feed(tail);
  yield* queue;
}
