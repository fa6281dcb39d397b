import { Metadata } from "@grpc/grpc-js";
import type { ChatMessage } from "@tokenmesh/proto/common/v1/chat";
import type { RequestContext } from "@tokenmesh/proto/common/v1/context";
import { Action, type FilterOutputResponse, GuardServiceClient } from "@tokenmesh/proto/guard/v1/guard";
import { callUnary, createGrpcClient, fromGrpcError } from "@tokenmesh/runtime";
import type { Guard, InputVerdict, OutputFilter, OutputRelease } from "../domain/ports.js";

const ACTIONS: Record<Action, InputVerdict["action"]> = {
  [Action.ACTION_UNSPECIFIED]: "allow",
  [Action.ACTION_ALLOW]: "allow",
  [Action.ACTION_REDACT]: "redact",
  [Action.ACTION_BLOCK]: "block",
};

/** The guard over gRPC: CheckInput (unary) and FilterOutput (one bidirectional stream per response). */
export class GrpcGuard implements Guard {
  private readonly client: GuardServiceClient;

  constructor(address: string) {
    this.client = createGrpcClient(GuardServiceClient, address);
  }

  async checkInput(
    ctx: RequestContext,
    model: string,
    messages: ChatMessage[],
    signal: AbortSignal,
  ): Promise<InputVerdict> {
    const res = await callUnary(
      this.client.checkInput.bind(this.client),
      { context: ctx, model, messages, policy: "" },
      {
        signal,
        deadlineMs: 10_000,
      },
    );
    return { action: ACTIONS[res.action], messages: res.messages, ruleIds: res.ruleIds, reason: res.reason };
  }

  async filterText(ctx: RequestContext, texts: { index: number; text: string }[], signal: AbortSignal) {
    const res = await callUnary(
      this.client.filterText.bind(this.client),
      { context: ctx, policy: "", texts },
      {
        signal,
        deadlineMs: 10_000,
      },
    );
    return res.texts.map((t) => ({ index: t.index, text: t.text, blocked: t.blocked, ruleIds: t.ruleIds }));
  }

  filterOutput(ctx: RequestContext, onRelease: (r: OutputRelease) => void, signal: AbortSignal): OutputFilter {
    const call = this.client.filterOutput(new Metadata());
    const waiting = new Map<
      number,
      { resolve: (r: { text: string; blocked: boolean; ruleIds: string[] }) => void; reject: (e: Error) => void }[]
    >();
    let failure: Error | undefined;
    const failAll = (err: Error) => {
      failure ??= err;
      for (const list of waiting.values()) for (const w of list) w.reject(failure);
      waiting.clear();
    };
    call.on("data", (r: FilterOutputResponse) => {
      if (r.flushed) {
        const w = waiting.get(r.index)?.shift();
        w?.resolve({ text: r.text, blocked: r.blocked, ruleIds: r.ruleIds });
      } else {
        onRelease({ index: r.index, text: r.text, blocked: r.blocked, ruleIds: r.ruleIds });
      }
    });
    call.on("error", (err) => failAll(fromGrpcError(err)));
    call.on("end", () => failAll(new Error("guard closed the output filter")));
    const onAbort = () => call.cancel();
    signal.addEventListener("abort", onAbort, { once: true });
    call.write({ start: { context: ctx, policy: "" } });
    return {
      write: (index, text) => {
        if (!failure) call.write({ text: { index, text } });
      },
      flush: (index) =>
        new Promise((resolve, reject) => {
          if (failure) return reject(failure);
          const list = waiting.get(index) ?? [];
          list.push({ resolve, reject });
          waiting.set(index, list);
          call.write({ flush: index });
        }),
      close: () => {
        signal.removeEventListener("abort", onAbort);
        if (!failure) {
          failure = new Error("closed");
          call.end();
        }
      },
    };
  }

  close(): void {
    this.client.close();
  }
}
