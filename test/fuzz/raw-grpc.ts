import { Client, credentials, Metadata, status } from "@grpc/grpc-js";

/** How a raw gRPC call ended: its status code (OK included), and the messages a stream delivered before. */
export interface GrpcOutcome {
  code: status;
  details: string;
  messages: number;
}

const passThrough = (b: Buffer) => b;

/**
 * A gRPC client that sends request messages as raw bytes (no protobuf encoding, so truncated and garbage messages
 * reach the server as they are) and does not decode responses. One channel, reused for every call.
 */
export class RawGrpcClient {
  private readonly client: Client;

  constructor(address: string) {
    this.client = new Client(address, credentials.createInsecure(), {
      // The fuzzer sends large messages and metadata on purpose; the client must not refuse them itself.
      "grpc.max_send_message_length": -1,
      "grpc.max_receive_message_length": -1,
    });
  }

  /** One call to `path` with `message` as the request; a unary call unless `stream` (server streaming). */
  call(
    path: string,
    message: Buffer,
    metadata: Record<string, string | Buffer>,
    options: { stream: boolean; deadlineMs: number },
  ): Promise<GrpcOutcome> {
    const md = new Metadata();
    for (const [k, v] of Object.entries(metadata)) md.set(k, v);
    const deadline = Date.now() + options.deadlineMs;
    return new Promise((resolve) => {
      if (!options.stream) {
        this.client.makeUnaryRequest(path, passThrough, passThrough, message, md, { deadline }, (err) => {
          resolve(
            err ? { code: err.code, details: err.details, messages: 0 } : { code: status.OK, details: "", messages: 1 },
          );
        });
        return;
      }
      let messages = 0;
      const call = this.client.makeServerStreamRequest(path, passThrough, passThrough, message, md, { deadline });
      call.on("data", () => {
        messages++;
      });
      // "status" comes once, after the last message or with the error; "error" alone would miss a clean OK.
      call.on("status", (s: { code: status; details: string }) =>
        resolve({ code: s.code, details: s.details, messages }),
      );
      call.on("error", () => {});
    });
  }

  close(): void {
    this.client.close();
  }
}
