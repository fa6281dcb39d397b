import {
  type CompiledPolicy,
  checkInput,
  type DeepPolicy,
  type GuardDecisionRecord,
  type MessageRole,
  messageTexts,
  OutputFilter as PolicyOutputFilter,
  type OutputRelease as PolicyRelease,
  type PolicySet,
  resolvePolicy,
  type TextCheckMemo,
  withMessageTexts,
} from "@tokenmesh/guard-policy";
import { type ChatMessage, Role } from "@tokenmesh/proto/common/v1/chat";
import type { RequestContext } from "@tokenmesh/proto/common/v1/context";
import { isAppError } from "@tokenmesh/runtime";
import { type Logger, trace } from "@tokenmesh/telemetry";
import type { Guard, InputVerdict, OutputFilter, OutputRelease, OutputSlot } from "../domain/ports.js";
import { metrics } from "../metrics.js";
import type { DeepTier } from "./guard-deep.client.js";

const ROLES: Record<Role, MessageRole> = {
  [Role.ROLE_UNSPECIFIED]: "unknown",
  [Role.ROLE_SYSTEM]: "system",
  [Role.ROLE_USER]: "user",
  [Role.ROLE_ASSISTANT]: "assistant",
  [Role.ROLE_TOOL]: "tool",
  [Role.ROLE_DEVELOPER]: "developer",
};

/** Time the gateway allows the guard hop beyond the policy's `timeout_ms` (which bounds the model call). */
const DEEP_HOP_GRACE_MS = 250;

export interface InProcessGuardDeps {
  /** The guard policies in force (read once per request or stream, so a reload never splits one). */
  policies: () => PolicySet;
  /** Takes non-allow decisions for `llm.guard.decision.v1`; must not throw. */
  decisions: (d: GuardDecisionRecord) => void;
  /** The guard service's DeepCheck; called only for policies with `guard.deep`. */
  deep: DeepTier;
  logger: Logger;
  /** Remembers findings of texts seen before, per tenant (the key's team, else the key); none: scan every time. */
  memo?: TextCheckMemo;
}

interface DeepResult {
  block: boolean;
  ruleIds: string[];
  reason: string;
}

/**
 * The guard port served in-process from @tokenmesh/guard-policy: the deterministic tier (length limit, injection
 * heuristics, secret/PII/operator rules, the streaming redactor with its holdback window) costs no network hop.
 * The request's policy is its key's (`guard.keys`), else its team's (`guard.teams`), else the default.
 *
 * Output is redacted per choice and slot: content, refusal and each tool call's arguments are texts of their own
 * (a secret inside tool arguments is redacted like one in content; a block in any of them blocks the output).
 *
 * Only a policy with `guard.deep` calls the guard service (DeepCheck): on input after the rules (on the redacted
 * messages) and before routing; on output on each choice's complete text — the whole answer when not streamed, and
 * at each streamed choice's end, where `flush` then reports `blocked` and the stream ends with finish reason
 * `content_filter`. Streamed text released before that verdict has already reached the client; only the held-back
 * tail is withheld. Shadow mode never blocks. When the guard does not answer within `timeout_ms` (+250 ms for the
 * hop) or fails, `on_error` decides.
 *
 * Decisions: the deterministic tier's non-allow decisions are published from here (once per request and stage);
 * deep verdicts are published by the guard service, except a block by `on_error` when the guard could not be
 * reached, published from here. Metrics count every decision by stage, tier, action and mode.
 *
 * The output deep check judges the answer in the context of the checked request's messages, found by the
 * RequestContext object the chat flow passes to checkInput and again to the output calls; a different object
 * means the answer is judged alone.
 */
export class InProcessGuard implements Guard {
  private readonly conversations = new WeakMap<RequestContext, ChatMessage[]>();

  constructor(private readonly deps: InProcessGuardDeps) {}

  private policyFor(ctx: RequestContext): CompiledPolicy {
    // Without a policy name resolvePolicy always finds one (the default at worst).
    return resolvePolicy(this.deps.policies(), { keyId: ctx.keyId, team: ctx.team })!;
  }

  private record(ctx: RequestContext, d: Omit<GuardDecisionRecord, "requestId" | "keyId">): void {
    metrics.guardDecisions.inc({ stage: d.stage, tier: d.tier, action: d.action, mode: d.mode });
    for (const rule of d.ruleIds) metrics.guardRuleHits.inc({ rule });
    this.deps.decisions({ requestId: ctx.requestId, keyId: ctx.keyId, ...d });
  }

  async checkInput(
    ctx: RequestContext,
    _model: string,
    messages: ChatMessage[],
    signal: AbortSignal,
  ): Promise<InputVerdict> {
    const policy = this.policyFor(ctx);
    const started = performance.now();
    const memo = this.deps.memo;
    const decision = checkInput(
      policy,
      messages.map((m) => ({ role: ROLES[m.role] ?? "unknown", ...messageTexts(m) })),
      memo && { memo, scope: ctx.team ? `team:${ctx.team}` : `key:${ctx.keyId}` },
    );
    metrics.guardCheckDuration.observe({ stage: "input", tier: "deterministic" }, (performance.now() - started) / 1000);
    trace.getActiveSpan()?.setAttributes({
      "tokenmesh.guard.action": decision.verdict,
      "tokenmesh.guard.rule_ids": decision.ruleIds,
    });
    if (decision.verdict === "allow") {
      metrics.guardDecisions.inc({ stage: "input", tier: "deterministic", action: "allow", mode: "block" });
    } else {
      this.record(ctx, {
        action: decision.verdict,
        stage: "input",
        ruleIds: decision.ruleIds,
        tier: "deterministic",
        mode: "block",
      });
    }
    if (decision.verdict === "block") {
      return { action: "block", messages: [], ruleIds: decision.ruleIds, reason: decision.reason };
    }
    const checked =
      decision.verdict === "redact" ? messages.map((m, i) => withMessageTexts(m, decision.texts[i] ?? [])) : messages;
    const deep = policy.deep;
    if (deep?.output) this.conversations.set(ctx, checked);
    if (deep?.input) {
      const v = await this.deepCheck(ctx, policy.name, deep, { stage: "input", messages: checked }, signal);
      if (v.block) return { action: "block", messages: [], ruleIds: v.ruleIds, reason: v.reason };
    }
    return {
      action: decision.verdict,
      messages: decision.verdict === "redact" ? checked : [],
      ruleIds: decision.ruleIds,
      reason: decision.reason,
    };
  }

  async filterText(
    ctx: RequestContext,
    texts: { index: number; slot?: OutputSlot; text: string }[],
    signal: AbortSignal,
  ): Promise<{ index: number; slot?: OutputSlot; text: string; blocked: boolean; ruleIds: string[] }[]> {
    const policy = this.policyFor(ctx);
    const filter = new PolicyOutputFilter(policy);
    const out: { index: number; slot?: OutputSlot; text: string; blocked: boolean; ruleIds: string[] }[] = [];
    for (const t of texts) {
      const slot = t.slot ?? "content";
      const head = filter.text(t.index, t.text, slot);
      const rest = filter.flush(t.index, slot);
      const blocked = filter.blockedBy !== undefined;
      out.push({
        index: t.index,
        ...(t.slot !== undefined ? { slot: t.slot } : {}),
        text: blocked ? "" : (head?.text ?? "") + (rest?.text ?? ""),
        ruleIds: [...new Set([...(head?.ruleIds ?? []), ...(rest?.ruleIds ?? [])])],
        blocked,
      });
    }
    this.recordOutput(ctx, filter);
    const deep = policy.deep;
    if (deep?.output && filter.blockedBy === undefined) {
      const messages = this.conversations.get(ctx) ?? [];
      // The deep tier judges each choice's answer text; tool arguments and refusals are not what it rates.
      const judged = out.filter((o) => (o.slot ?? "content") === "content");
      const verdicts = await Promise.all(
        judged.map((o) =>
          this.deepCheck(
            ctx,
            policy.name,
            deep,
            { stage: "output", messages, response: o.text, index: o.index },
            signal,
          ),
        ),
      );
      verdicts.forEach((v, i) => {
        const o = judged[i]!;
        if (v.block) Object.assign(o, { text: "", blocked: true, ruleIds: v.ruleIds });
      });
    }
    return out;
  }

  filterOutput(ctx: RequestContext, onRelease: (r: OutputRelease) => void, signal: AbortSignal): OutputFilter {
    const policy = this.policyFor(ctx);
    const deep = policy.deep?.output ? policy.deep : undefined;
    const filter = new PolicyOutputFilter(policy);
    // The text released so far per choice: what the deep check judges when the choice ends.
    const released = new Map<number, string>();
    const keep = (r: PolicyRelease) => {
      if (deep && r.text) released.set(r.index, (released.get(r.index) ?? "") + r.text);
    };
    let closed = false;
    const toPort = (r: PolicyRelease): OutputRelease => ({
      index: r.index,
      ...(r.slot !== "content" ? { slot: r.slot } : {}),
      text: r.text,
      blocked: r.blocked,
      ruleIds: r.ruleIds,
    });
    return {
      write: (index, text, slot = "content") => {
        if (closed) return;
        const r = filter.text(index, text, slot);
        if (!r) return;
        if (r.slot === "content") keep(r);
        onRelease(toPort(r));
      },
      flush: async (index) => {
        const all = closed ? [] : filter.flushChoice(index);
        // The other slots' rest goes out first, through onRelease; the content's rest is the answer.
        for (const o of all) if (o.slot !== "content" && !o.blocked) onRelease(toPort(o));
        const r = all.find((o) => o.slot === "content");
        const block = all.find((o) => o.blocked);
        if (block) return { text: "", blocked: true, ruleIds: block.ruleIds };
        if (!r) return { text: "", blocked: filter.blockedBy !== undefined, ruleIds: [] };
        if (!deep) return { text: r.text, blocked: false, ruleIds: r.ruleIds };
        keep(r);
        const response = released.get(index) ?? "";
        released.delete(index);
        // A choice without text (tool calls only) has nothing for a guard model to judge.
        if (response === "") return { text: r.text, blocked: false, ruleIds: r.ruleIds };
        const messages = this.conversations.get(ctx) ?? [];
        const v = await this.deepCheck(ctx, policy.name, deep, { stage: "output", messages, response, index }, signal);
        return v.block
          ? { text: "", blocked: true, ruleIds: v.ruleIds }
          : { text: r.text, blocked: false, ruleIds: r.ruleIds };
      },
      close: () => {
        if (closed) return;
        closed = true;
        filter.end();
        this.recordOutput(ctx, filter);
      },
    };
  }

  /** One deterministic output decision per response (stream or whole answer). */
  private recordOutput(ctx: RequestContext, filter: PolicyOutputFilter): void {
    for (const rule of filter.takeHits()) metrics.guardRuleHits.inc({ rule });
    const blockedBy = filter.blockedBy;
    const redacted = filter.redactedRuleIds;
    if (!blockedBy && redacted.length === 0) {
      metrics.guardDecisions.inc({ stage: "output", tier: "deterministic", action: "allow", mode: "block" });
      return;
    }
    const ruleIds = blockedBy ? [...new Set([blockedBy, ...redacted])].sort() : redacted;
    // Rule hits were counted above from the filter itself; record() would count them again.
    metrics.guardDecisions.inc({
      stage: "output",
      tier: "deterministic",
      action: blockedBy ? "block" : "redact",
      mode: "block",
    });
    this.deps.decisions({
      requestId: ctx.requestId,
      keyId: ctx.keyId,
      action: blockedBy ? "block" : "redact",
      stage: "output",
      ruleIds,
      tier: "deterministic",
      mode: "block",
    });
  }

  /**
   * Asks the guard service; a timeout or failure of the hop follows `on_error` (published from here when it blocks,
   * since the guard could not). Rejects only when `signal` aborts (the client is gone).
   */
  private async deepCheck(
    ctx: RequestContext,
    policy: string,
    deep: DeepPolicy,
    subject: { stage: "input" | "output"; messages: ChatMessage[]; response?: string; index?: number },
    signal: AbortSignal,
  ): Promise<DeepResult> {
    const started = performance.now();
    const shadow = deep.mode === "shadow";
    try {
      const a = await this.deps.deep.check({ ctx, policy, ...subject }, deep.timeoutMs + DEEP_HOP_GRACE_MS, signal);
      const action = a.block ? "block" : "allow";
      metrics.guardDecisions.inc({ stage: subject.stage, tier: "deep", action, mode: a.shadow ? "shadow" : "block" });
      return { block: a.checked && a.block && !a.shadow, ruleIds: a.ruleIds, reason: a.reason };
    } catch (err) {
      if (signal.aborted) throw err;
      const timeout = isAppError(err) && err.code === "DEADLINE_EXCEEDED";
      const rule = timeout ? "deep.timeout" : "deep.error";
      this.deps.logger.warn(
        { err, request_id: ctx.requestId, stage: subject.stage, on_error: deep.onError },
        "guard deep tier unreachable; on_error applies",
      );
      const mode = shadow ? "shadow" : "block";
      if (deep.onError === "block") {
        this.record(ctx, {
          action: "block",
          stage: subject.stage,
          ruleIds: [rule],
          tier: "deep",
          mode,
          index: subject.index,
        });
      } else {
        metrics.guardDecisions.inc({ stage: subject.stage, tier: "deep", action: "allow", mode });
      }
      return {
        block: deep.onError === "block" && !shadow,
        ruleIds: [rule],
        reason: `the guard's deep check ${timeout ? "timed out" : "failed"}; on_error: ${deep.onError}`,
      };
    } finally {
      metrics.guardCheckDuration.observe({ stage: subject.stage, tier: "deep" }, (performance.now() - started) / 1000);
    }
  }

  close(): void {
    this.deps.deep.close();
  }
}
