/**
 * A non-allow guard decision as both tiers report it (the `llm.guard.decision.v1` payload's fields): rule ids only,
 * never the matched or judged text.
 */
export interface GuardDecisionRecord {
  requestId: string;
  keyId: string;
  action: "redact" | "block";
  stage: "input" | "output";
  ruleIds: string[];
  /** "deterministic": rules (gateway or the guard's public API); "deep": guard model or moderation upstream. */
  tier: "deterministic" | "deep";
  /** "shadow" when a shadow-mode deep check only recorded the verdict. */
  mode: "block" | "shadow";
  /** For a deep output check: the choice judged (each choice is its own decision). */
  index?: number;
}

/**
 * The event's `Nats-Msg-Id`: `<request>:<stage>` for the deterministic tier, `<request>:<stage>:deep[:<index>]`
 * for the deep one, so a retried publish is stored once and the two tiers' decisions never collide.
 */
export function decisionMessageId(d: Pick<GuardDecisionRecord, "requestId" | "stage" | "tier" | "index">): string {
  const base = `${d.requestId}:${d.stage}`;
  if (d.tier === "deterministic") return base;
  return d.index === undefined ? `${base}:deep` : `${base}:deep:${d.index}`;
}
