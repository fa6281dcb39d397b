import type { Usage } from "@tokenmesh/proto/common/v1/chat";
import type { UsageRecorded } from "@tokenmesh/proto/events/v1/events";
import { toAppError } from "@tokenmesh/runtime";
import { currentTraceIds } from "@tokenmesh/telemetry";
import type { Admission, Admitted } from "./admission.js";
import type { Principal } from "./keys.js";
import type { UsageSink } from "./ports.js";

const ZERO_USAGE: Usage = { inputTokens: 0, outputTokens: 0, cachedTokens: 0 };

/** Per-request facts gathered along the way; `UsageRecorder.finish` turns them into the UsageRecorded event. */
export class UsageDraft {
  principal: Principal | undefined;
  admitted: Admitted | undefined;
  model = "";
  provider = "";
  cacheHit = false;
  /** Why the router chose the model (RouteInfo.reason), for the event's `route_reason`. */
  routeReason = "";
  /** A speculative request's upgrade id, "" when none. */
  upgradeId = "";
  /** Which cache answered ("exact", "semantic"; "" when the model did), and a semantic hit's similarity. */
  cacheKind = "";
  cacheSimilarity = 0;
  usage: Usage | undefined;
  /** Whether a model started on the request (the router said which): only then can tokens have been consumed. */
  routed = false;
  /** Estimated tokens of the input, for when the provider's count never arrives (set once the request is known). */
  inputEstimate = 0;
  /** Estimated tokens of the answer text received so far (counted as it arrives, whatever reached the client). */
  outputEstimate = 0;
  firstTokenAt: number | undefined;
  private finished = false;
  readonly started = performance.now();
  readonly traceId = currentTraceIds().traceId;

  constructor(
    readonly call: {
      /** The server-minted request id: the event's `Nats-Msg-Id` and the ledger's dedup key. */
      requestId: string;
      modelRequested: string;
      user: string;
      endpoint: "chat" | "embeddings" | "messages";
      signal: AbortSignal;
    },
    readonly stream: boolean,
  ) {}

  /** Marks the draft finished; true only the first time (so a request is recorded once). */
  claim(): boolean {
    if (this.finished) return false;
    this.finished = true;
    return true;
  }
}

/** The event's status for a request's outcome. */
export function statusOf(err: unknown, signal: AbortSignal): { status: string; errorCode: string } {
  if (err === undefined) return { status: "ok", errorCode: "" };
  const e = toAppError(err);
  const status =
    e.reason === "content_policy_violation"
      ? "blocked"
      : e.code === "CANCELLED" || signal.aborted
        ? "cancelled"
        : "error";
  return { status, errorCode: e.reason ?? e.code };
}

/**
 * Design step 7: exactly one usage event per request, whatever its outcome (ok, error, blocked, cancelled), then
 * its concurrency slots released (once: a request ends here whatever ended it) and the rate limiter's token hold
 * corrected to what the request used.
 */
export class UsageRecorder {
  constructor(
    private readonly sink: UsageSink,
    private readonly admission: Admission,
  ) {}

  finish(draft: UsageDraft, err?: unknown): void {
    if (!draft.claim()) return;
    const { status, errorCode } = statusOf(err, draft.call.signal);
    // A stream that ended early (client gone, fault, block) never got the provider's count: bill what was consumed,
    // estimated, rather than nothing. The router reports the same request from its side; the ledger takes the larger.
    const estimated = draft.usage === undefined && draft.routed;
    const usage =
      draft.usage ??
      (estimated
        ? { inputTokens: draft.inputEstimate, outputTokens: draft.outputEstimate, cachedTokens: 0 }
        : ZERO_USAGE);
    const p = draft.principal;
    const event: UsageRecorded = {
      requestId: draft.call.requestId,
      timestamp: new Date().toISOString(),
      keyId: p?.keyId ?? "",
      team: p?.team ?? "",
      user: p?.user || draft.call.user,
      modelRequested: draft.call.modelRequested,
      model: draft.model,
      provider: draft.provider,
      inputTokens: usage.inputTokens,
      outputTokens: usage.outputTokens,
      cachedTokens: usage.cachedTokens,
      cacheHit: draft.cacheHit,
      status,
      errorCode,
      latencyMs: performance.now() - draft.started,
      ttftMs: draft.firstTokenAt === undefined ? 0 : draft.firstTokenAt - draft.started,
      traceId: draft.traceId,
      endpoint: draft.call.endpoint,
      stream: draft.stream,
      // Not admitted: a Reserve call whose answer was lost (cost died, the call timed out) may still have taken a
      // hold, under the request id (cost's contract). Naming it lets the ledger settle that hold; it is a no-op when
      // there is none.
      reservationId: draft.admitted ? draft.admitted.reservationId : draft.call.requestId,
      estimated,
      discardedOutputTokens: 0,
      routeReason: draft.routeReason,
      cacheKind: draft.cacheKind,
      cacheSimilarity: draft.cacheSimilarity,
    };
    const stored = this.sink.record(event);
    // The sink logs an event it refused; the rejection only tells `holdReported` to keep the hold open.
    stored?.catch(() => undefined);
    if (draft.admitted) {
      this.admission.holdReported(draft.admitted, stored);
      this.admission.release(draft.admitted);
    }
    if (p && draft.admitted) {
      this.admission.settle(p, draft.call.requestId, draft.admitted, usage.inputTokens + usage.outputTokens);
    }
  }
}
