import {
  type CompiledPolicy,
  checkInput,
  type InputMessage,
  type MessageRole,
  messageTexts,
  OutputFilter,
  type OutputRelease,
  type PolicySet,
  resolvePolicy,
  type Verdict,
  withMessageTexts,
} from "@tokenmesh/guard-policy";
import type { ChatMessage } from "@tokenmesh/proto/common/v1/chat";
import { Role } from "@tokenmesh/proto/common/v1/chat";
import type { RequestContext } from "@tokenmesh/proto/common/v1/context";
import {
  Action,
  type CheckInputRequest,
  type CheckInputResponse,
  type DeepCheckRequest,
  type DeepCheckResponse,
  type FilterOutputRequest,
  type FilterOutputResponse,
  type FilterTextRequest,
  type FilterTextResponse,
  type GuardServiceService,
  Stage,
} from "@tokenmesh/proto/guard/v1/guard";
import { AppError, type CallContext, type Handlers } from "@tokenmesh/runtime";
import { type Logger, trace } from "@tokenmesh/telemetry";
import type { DeepSubject, Turn } from "../domain/conversation.js";
import { type DeepCheckPorts, runDeepCheck } from "../domain/deep-check.js";
import type { DecisionSink } from "../events/decision.publisher.js";
import { guardMetrics } from "../metrics.js";

export interface GuardHandlerDeps {
  /** The policies in force (re-read on every call, so reloads apply to the next request or stream). */
  policies: () => PolicySet;
  decisions: DecisionSink;
  /** The deep tier's calls, bound to the checked request's context (router Route, moderation HTTP). */
  deep: (context: RequestContext) => DeepCheckPorts;
  logger: Logger;
}

const ROLES: Record<Role, MessageRole> = {
  [Role.ROLE_UNSPECIFIED]: "unknown",
  [Role.ROLE_SYSTEM]: "system",
  [Role.ROLE_USER]: "user",
  [Role.ROLE_ASSISTANT]: "assistant",
  [Role.ROLE_TOOL]: "tool",
  [Role.ROLE_DEVELOPER]: "developer",
};

const ACTIONS: Record<Verdict, Action> = {
  allow: Action.ACTION_ALLOW,
  redact: Action.ACTION_REDACT,
  block: Action.ACTION_BLOCK,
};

function toInputMessage(m: ChatMessage): InputMessage {
  return { role: ROLES[m.role] ?? "unknown", ...messageTexts(m) };
}

/**
 * The conversation a deep check judges: user and tool messages as the user side, assistant messages as the agent;
 * the operator's system and developer prompts are not judged.
 */
function toTurns(messages: readonly ChatMessage[]): Turn[] {
  const turns: Turn[] = [];
  for (const m of messages) {
    const role =
      m.role === Role.ROLE_ASSISTANT
        ? "assistant"
        : m.role === Role.ROLE_USER || m.role === Role.ROLE_TOOL
          ? "user"
          : undefined;
    if (!role) continue;
    turns.push({
      role,
      text: messageTexts(m)
        .texts.filter((t) => t !== "")
        .join("\n"),
    });
  }
  return turns;
}

function policyFor(set: PolicySet, name: string, context: RequestContext | undefined): CompiledPolicy {
  const p = resolvePolicy(set, { policy: name, keyId: context?.keyId, team: context?.team });
  if (!p)
    throw new AppError("INVALID_ARGUMENT", `unknown guard policy "${name}"`, {
      param: "policy",
      reason: "unknown_policy",
    });
  return p;
}

function countHits(hits: readonly string[]): void {
  for (const rule of hits) guardMetrics.ruleHits.inc({ rule });
}

function toResponse(r: OutputRelease): FilterOutputResponse {
  return { index: r.index, text: r.text, ruleIds: r.ruleIds, blocked: r.blocked, flushed: r.flushed };
}

/**
 * GuardService: CheckInput evaluates the input policy; FilterOutput redacts a generation stream per choice;
 * FilterText filters whole texts; DeepCheck runs the policy's deep tier. A request's policy is the one it names,
 * else its context's key's or team's (`guard.keys`, `guard.teams`), else the default. Non-allow decisions are
 * recorded once per request, stage and tier (the output one when its stream ends; deep output once per choice).
 *
 * FilterOutput protocol: the first message must be `start` (INVALID_ARGUMENT otherwise). A response is sent when
 * text is released (not for every fragment: text may be held back), for every `flush` (exactly one, marked
 * `flushed`, even when empty), and at the end of the client's stream for choices never flushed. A response with
 * `blocked` ends the stream.
 */
export function guardHandlers(deps: GuardHandlerDeps): Handlers<typeof GuardServiceService> {
  /** One output decision per response: metrics always, an event when something was redacted or blocked. */
  const recordOutputDecision = (filter: OutputFilter, context: RequestContext | undefined) => {
    countHits(filter.takeHits());
    const blockedBy = filter.blockedBy;
    const redacted = filter.redactedRuleIds;
    const action: Verdict = blockedBy ? "block" : redacted.length > 0 ? "redact" : "allow";
    guardMetrics.decisions.inc({ stage: "output", action });
    if (action === "allow") return;
    deps.decisions.record({
      requestId: context?.requestId ?? "",
      keyId: context?.keyId ?? "",
      action,
      stage: "output",
      ruleIds: blockedBy ? [...new Set([blockedBy, ...redacted])].sort() : redacted,
      tier: "deterministic",
      mode: "block",
    });
  };

  return {
    async checkInput(req: CheckInputRequest): Promise<CheckInputResponse> {
      const policy = policyFor(deps.policies(), req.policy, req.context);
      const started = performance.now();
      const decision = checkInput(policy, req.messages.map(toInputMessage));
      guardMetrics.checkDuration.observe((performance.now() - started) / 1000);
      guardMetrics.decisions.inc({ stage: "input", action: decision.verdict });
      countHits(decision.hits);
      trace.getActiveSpan()?.setAttributes({
        "tokenmesh.guard.action": decision.verdict,
        "tokenmesh.guard.rule_ids": decision.ruleIds,
        "gen_ai.usage.input_tokens": decision.inputTokens,
      });
      if (decision.verdict !== "allow") {
        deps.decisions.record({
          requestId: req.context?.requestId ?? "",
          keyId: req.context?.keyId ?? "",
          action: decision.verdict,
          stage: "input",
          ruleIds: decision.ruleIds,
          tier: "deterministic",
          mode: "block",
        });
      }
      return {
        action: ACTIONS[decision.verdict],
        messages:
          decision.verdict === "redact" ? req.messages.map((m, i) => withMessageTexts(m, decision.texts[i] ?? [])) : [],
        ruleIds: decision.ruleIds,
        reason: decision.reason,
        inputTokens: decision.inputTokens,
      };
    },

    async filterText(req: FilterTextRequest): Promise<FilterTextResponse> {
      const filter = new OutputFilter(policyFor(deps.policies(), req.policy, req.context));
      const texts: FilterOutputResponse[] = [];
      for (const t of req.texts) {
        const head = filter.text(t.index, t.text);
        const rest = filter.flush(t.index);
        const blocked = filter.blockedBy !== undefined;
        texts.push({
          index: t.index,
          text: blocked ? "" : (head?.text ?? "") + (rest?.text ?? ""),
          ruleIds: [...new Set([...(head?.ruleIds ?? []), ...(rest?.ruleIds ?? [])])],
          blocked,
          flushed: true,
        });
      }
      recordOutputDecision(filter, req.context);
      return { texts };
    },

    // made-once: guardHandlers runs once, at startup (scripts/check-closures.mjs).
    async *filterOutput(requests: AsyncIterable<FilterOutputRequest>): AsyncGenerator<FilterOutputResponse> {
      let filter: OutputFilter | undefined;
      let context: RequestContext | undefined;
      const finish = () => {
        if (filter) recordOutputDecision(filter, context);
      };
      try {
        for await (const req of requests) {
          if (req.start) {
            if (filter) throw new AppError("INVALID_ARGUMENT", "start sent twice", { param: "start" });
            context = req.start.context;
            filter = new OutputFilter(policyFor(deps.policies(), req.start.policy, context));
            continue;
          }
          if (!filter) throw new AppError("INVALID_ARGUMENT", "the first message must be start", { param: "start" });
          let release: OutputRelease | undefined;
          if (req.text) release = filter.text(req.text.index, req.text.text);
          else if (req.flush !== undefined) release = filter.flush(req.flush);
          if (!release) continue;
          yield toResponse(release);
          if (release.blocked) return;
        }
        for (const release of filter?.end() ?? []) yield toResponse(release);
      } finally {
        // Runs on normal end, block, client cancel and errors alike: one output decision per stream.
        finish();
      }
    },

    async deepCheck(req: DeepCheckRequest, call: CallContext): Promise<DeepCheckResponse> {
      if (req.stage !== Stage.STAGE_INPUT && req.stage !== Stage.STAGE_OUTPUT) {
        throw new AppError("INVALID_ARGUMENT", "stage must be STAGE_INPUT or STAGE_OUTPUT", { param: "stage" });
      }
      const stage = req.stage === Stage.STAGE_INPUT ? "input" : "output";
      const deep = policyFor(deps.policies(), req.policy, req.context).deep;
      const none = {
        action: Action.ACTION_ALLOW,
        shadow: false,
        ruleIds: [],
        categories: [],
        checked: false,
        reason: "",
      };
      if (!deep) return none;
      const conversation = toTurns(req.messages);
      const subject: DeepSubject =
        stage === "input" ? { stage, conversation } : { stage, conversation, response: req.response };
      const context = req.context ?? { requestId: "", keyId: "", team: "", user: "", priority: 0 };
      const started = performance.now();
      const v = await runDeepCheck(deep, subject, deps.deep(context), call.signal);
      if (v.outcome === "skipped") return none;
      const mode = v.shadow ? "shadow" : "block";
      guardMetrics.deepDuration.observe({ stage }, (performance.now() - started) / 1000);
      guardMetrics.deepChecks.inc({ stage, outcome: v.outcome, mode, action: v.action });
      countHits(v.ruleIds);
      trace.getActiveSpan()?.setAttributes({
        "tokenmesh.guard.deep.outcome": v.outcome,
        "tokenmesh.guard.action": v.action,
        "tokenmesh.guard.mode": mode,
        "tokenmesh.guard.rule_ids": v.ruleIds,
      });
      if (v.outcome === "timeout" || v.outcome === "error") {
        deps.logger.warn(
          { err: v.error, request_id: context.requestId, stage, outcome: v.outcome, on_error: deep.onError },
          "deep check gave no verdict; on_error applies",
        );
      }
      if (v.action === "block") {
        deps.decisions.record({
          requestId: context.requestId,
          keyId: context.keyId,
          action: "block",
          stage,
          ruleIds: v.ruleIds,
          tier: "deep",
          mode,
          index: stage === "output" ? req.index : undefined,
        });
      }
      return {
        action: v.action === "block" ? Action.ACTION_BLOCK : Action.ACTION_ALLOW,
        shadow: v.shadow,
        ruleIds: v.ruleIds,
        categories: v.categories,
        checked: true,
        reason: v.reason,
      };
    },
  };
}
