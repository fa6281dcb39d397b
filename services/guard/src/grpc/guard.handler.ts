import type { ChatMessage } from "@tokenmesh/proto/common/v1/chat";
import { Role } from "@tokenmesh/proto/common/v1/chat";
import type { RequestContext } from "@tokenmesh/proto/common/v1/context";
import {
  Action,
  type CheckInputRequest,
  type CheckInputResponse,
  type FilterOutputRequest,
  type FilterOutputResponse,
  type FilterTextRequest,
  type FilterTextResponse,
  type GuardServiceService,
} from "@tokenmesh/proto/guard/v1/guard";
import { AppError, type Handlers } from "@tokenmesh/runtime";
import { trace } from "@tokenmesh/telemetry";
import { checkInput, type InputMessage, type MessageRole, type Verdict } from "../domain/check-input.js";
import { OutputFilter, type OutputRelease } from "../domain/output-filter.js";
import { type CompiledPolicy, type PolicySet, selectPolicy } from "../domain/policy.js";
import type { DecisionSink } from "../events/decision.publisher.js";
import { guardMetrics } from "../metrics.js";

export interface GuardHandlerDeps {
  /** The policies in force (re-read on every call, so reloads apply to the next request or stream). */
  policies: () => PolicySet;
  decisions: DecisionSink;
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

/**
 * A message's text slots in a fixed order — content, then each text part, then each tool call's arguments — so
 * the redacted texts can be written back to the same places.
 */
function toInputMessage(m: ChatMessage): InputMessage {
  const texts = [m.content];
  let images = 0;
  for (const p of m.parts) {
    if (p.text !== undefined) texts.push(p.text);
    else if (p.imageUrl) images++;
  }
  for (const c of m.toolCalls) texts.push(c.function?.arguments ?? "");
  return { role: ROLES[m.role] ?? "unknown", texts, images };
}

function withTexts(m: ChatMessage, texts: readonly string[]): ChatMessage {
  let i = 0;
  const next = () => texts[i++] ?? "";
  const content = next();
  const parts = m.parts.map((p) => (p.text !== undefined ? { ...p, text: next() } : p));
  const toolCalls = m.toolCalls.map((c) => {
    const args = next();
    return c.function ? { ...c, function: { ...c.function, arguments: args } } : c;
  });
  return { ...m, content, parts, toolCalls };
}

function policyFor(set: PolicySet, name: string): CompiledPolicy {
  const p = selectPolicy(set, name);
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
 * GuardService: CheckInput evaluates the input policy; FilterOutput redacts a generation stream per choice.
 * Non-allow decisions are recorded once per request and stage (the output one when its stream ends).
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
    });
  };

  return {
    async checkInput(req: CheckInputRequest): Promise<CheckInputResponse> {
      const policy = policyFor(deps.policies(), req.policy);
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
        });
      }
      return {
        action: ACTIONS[decision.verdict],
        messages:
          decision.verdict === "redact" ? req.messages.map((m, i) => withTexts(m, decision.texts[i] ?? [])) : [],
        ruleIds: decision.ruleIds,
        reason: decision.reason,
        inputTokens: decision.inputTokens,
      };
    },

    async filterText(req: FilterTextRequest): Promise<FilterTextResponse> {
      const filter = new OutputFilter(policyFor(deps.policies(), req.policy));
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
            filter = new OutputFilter(policyFor(deps.policies(), req.start.policy));
            context = req.start.context;
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
  };
}
