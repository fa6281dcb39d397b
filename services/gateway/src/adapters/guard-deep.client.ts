import type { ChatMessage } from "@tokenmesh/proto/common/v1/chat";
import type { RequestContext } from "@tokenmesh/proto/common/v1/context";
import { Action, GuardServiceClient, Stage } from "@tokenmesh/proto/guard/v1/guard";
import { callUnary, createGrpcClient } from "@tokenmesh/runtime";

/** The guard service's answer to one deep check, as the in-process guard uses it. */
export interface DeepAnswer {
  /** False when the guard found no deep tier in the policy (e.g. mid-reload): nothing was checked. */
  checked: boolean;
  block: boolean;
  shadow: boolean;
  ruleIds: string[];
  reason: string;
}

/** The deep tier's one call: the guard service's DeepCheck (guard → router → guard model, or moderation). */
export interface DeepTier {
  check(
    input: {
      ctx: RequestContext;
      policy: string;
      stage: "input" | "output";
      messages: ChatMessage[];
      response?: string;
      index?: number;
    },
    deadlineMs: number,
    signal: AbortSignal,
  ): Promise<DeepAnswer>;
  close(): void;
}

/** DeepCheck over gRPC (GUARD_ADDR). Only requests whose policy has `guard.deep` reach it. */
export class GrpcDeepTier implements DeepTier {
  private readonly client: GuardServiceClient;

  constructor(address: string) {
    this.client = createGrpcClient(GuardServiceClient, address);
  }

  async check(input: Parameters<DeepTier["check"]>[0], deadlineMs: number, signal: AbortSignal): Promise<DeepAnswer> {
    const res = await callUnary(
      this.client.deepCheck.bind(this.client),
      {
        context: input.ctx,
        policy: input.policy,
        stage: input.stage === "input" ? Stage.STAGE_INPUT : Stage.STAGE_OUTPUT,
        messages: input.messages,
        response: input.response ?? "",
        index: input.index ?? 0,
      },
      { signal, deadlineMs },
    );
    return {
      checked: res.checked,
      block: res.action === Action.ACTION_BLOCK,
      shadow: res.shadow,
      ruleIds: res.ruleIds,
      reason: res.reason,
    };
  }

  close(): void {
    this.client.close();
  }
}
