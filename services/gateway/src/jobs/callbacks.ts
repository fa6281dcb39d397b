import { lookup as dnsLookup, type LookupAddress } from "node:dns";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import type { LookupFunction } from "node:net";
import {
  consumeEvents,
  type Delivery,
  type EventConsumer,
  type JetStreamClient,
  type JetStreamManager,
  JobCallbackEvent,
} from "@tokenmesh/events";
import type { JobCallback } from "@tokenmesh/proto/events/v1/events";
import { AppError } from "@tokenmesh/runtime";
import type { Logger } from "@tokenmesh/telemetry";
import { callbackUrlProblem, isBlockedAddress, SIGNATURE_HEADER, signCallback } from "../domain/job-callback.js";
import type { RedisJobStore } from "./store.js";
import { jobView } from "./view.js";

export interface CallbackSenderOptions {
  store: RedisJobStore;
  logger: Logger;
  allow: string[];
  /** Tries before the callback is dead-lettered. */
  maxAttempts: number;
  /** First retry delay; doubled each try, at most 10 minutes. */
  backoffMs: number;
  timeoutMs: number;
}

/** The durable consumer of callbacks every gateway replica shares. */
export const CALLBACKS_CONSUMER = "gateway-job-callbacks";

/**
 * Resolves like dns.lookup, but refuses link-local and metadata addresses. The connection uses the address checked
 * here, so a name that resolves to a blocked address, even only on the second lookup (DNS rebinding), is refused.
 */
const guardedLookup: LookupFunction = (hostname, options, callback) => {
  dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return callback(err, "", 0);
    const list = addresses as LookupAddress[];
    const bad = list.find((a) => isBlockedAddress(a.address));
    if (bad) {
      return callback(
        Object.assign(new Error(`callback host ${hostname} resolves to a blocked address`), { code: "EBLOCKED" }),
        "",
        0,
      );
    }
    if (options.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, list);
    const first = list[0];
    if (!first) return callback(Object.assign(new Error(`no address for ${hostname}`), { code: "ENOTFOUND" }), "", 0);
    callback(null, first.address, first.family);
  });
};

/** POSTs `body` to `url`; resolves with the status. Never follows redirects. */
function post(url: URL, body: string, headers: Record<string, string>, timeoutMs: number): Promise<number> {
  const send = url.protocol === "https:" ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(
      url,
      {
        method: "POST",
        headers: { ...headers, "content-type": "application/json", "content-length": Buffer.byteLength(body) },
        lookup: guardedLookup,
        timeout: timeoutMs,
      },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end(body);
  });
}

/**
 * Delivers job callbacks from the LLM_JOBS work queue: the job as `GET /v1/jobs/{id}` shows it, signed with the
 * key's secret (`x-tokenmesh-signature: t=<unix>,v1=<hex>`, see domain/job-callback.ts), with `x-tokenmesh-job-id`
 * and `x-tokenmesh-delivery` (the try number). A 2xx answer delivers it; anything else (or no answer within the
 * timeout) is tried again with exponential backoff, `maxAttempts` tries in all, then dead-lettered to
 * `llm.deadletter.v1.llm.jobs.callback.v1` and the job's `callback_status` set to "failed". A URL that is no longer
 * allowed (the allow-list changed, or the host resolves to a blocked address) is dead-lettered at once.
 * At least once: a receiver may see a callback twice (a lost 2xx) and should deduplicate by job id.
 */
export class CallbackSender {
  private consumer: EventConsumer | undefined;

  constructor(private readonly o: CallbackSenderOptions) {}

  async start(js: JetStreamClient, jsm: JetStreamManager): Promise<void> {
    this.consumer = await consumeEvents({
      js,
      jsm,
      logger: this.o.logger,
      type: JobCallbackEvent,
      durable: CALLBACKS_CONSUMER,
      concurrency: 16,
      prefetch: 32,
      ackWaitMs: this.o.timeoutMs + 10_000,
      maxDeliver: this.o.maxAttempts,
      retryDelayMs: (n) => Math.min(600_000, this.o.backoffMs * 2 ** (n - 1)),
      handler: (event, delivery) => this.deliver(event, delivery),
    });
  }

  async stop(): Promise<void> {
    await this.consumer?.stop();
  }

  private async deliver(event: JobCallback, delivery: Delivery): Promise<void> {
    const record = await this.o.store.get(event.jobId);
    if (!record) {
      this.o.logger.warn({ job_id: event.jobId }, "callback of a job past its retention: dropped");
      return;
    }
    const last = delivery.deliveryCount >= this.o.maxAttempts;
    const fail = async (err: AppError): Promise<never> => {
      if (last || !err.retryable) await this.o.store.setCallbackStatus(record.id, "failed").catch(() => undefined);
      throw err;
    };
    const problem = callbackUrlProblem(event.callbackUrl, this.o.allow);
    if (problem) {
      return fail(new AppError("FAILED_PRECONDITION", `callback URL ${problem}`, { retryable: false }));
    }
    const secret = await this.o.store.callbackSecret(record.keyId);
    const body = JSON.stringify(jobView(record));
    const t = Math.floor(Date.now() / 1000);
    let status: number;
    try {
      status = await post(
        new URL(event.callbackUrl),
        body,
        {
          [SIGNATURE_HEADER]: signCallback(secret, body, t),
          "x-tokenmesh-job-id": record.id,
          "x-tokenmesh-delivery": String(delivery.deliveryCount),
          "user-agent": "tokenmesh-callbacks/1",
        },
        this.o.timeoutMs,
      );
    } catch (err) {
      const blocked = (err as { code?: string }).code === "EBLOCKED";
      return fail(
        new AppError(
          "UNAVAILABLE",
          `callback to ${new URL(event.callbackUrl).host} failed: ${(err as Error).message}`,
          {
            retryable: !blocked,
          },
        ),
      );
    }
    if (status < 200 || status >= 300) {
      return fail(new AppError("UNAVAILABLE", `callback receiver answered ${status}`, { retryable: true }));
    }
    await this.o.store.setCallbackStatus(record.id, "delivered");
  }
}
