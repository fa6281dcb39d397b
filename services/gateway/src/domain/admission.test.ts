import { CatalogSchema } from "@tokenmesh/catalog";
import { createLogger } from "@tokenmesh/telemetry";
import { describe, expect, it } from "vitest";
import { Admission, type AdmissionRequest } from "./admission.js";
import type { ConcurrencyLimiter, ConcurrencyRequest } from "./concurrency.js";
import type { Principal } from "./keys.js";
import type { Cost, RateLimiter } from "./ports.js";

const principal: Principal = { keyId: "k", name: "k", team: "t", user: "", models: [], rpm: 10, tpm: 0, admin: false };
const request: AdmissionRequest = {
  requestId: "req_1",
  user: "u",
  model: "a",
  candidateModels: ["a", "b"],
  inputTokens: 10,
  inputTokenBound: 40,
  maxOutputTokens: 100,
  holdOutputTokens: 0,
};

function admissionWith(opts: { hard: boolean; reserve?: Cost["reserve"] }) {
  const settled: number[] = [];
  const reserved: Parameters<Cost["reserve"]>[0][] = [];
  const limiter: RateLimiter = {
    acquire: async () => ({ allowed: true, limitedBy: "", remainingRequests: 9, remainingTokens: -1, resetMs: 1 }),
    settle: async (_k, _r, _held, actual) => {
      settled.push(actual);
    },
  };
  const admission = new Admission({
    limiter,
    budgets: { blocked: () => false, hasHard: async () => opts.hard },
    cost: {
      reserve:
        opts.reserve ??
        (async (input) => {
          reserved.push(input);
          return "res_1";
        }),
      release: async () => undefined,
    },
    logger: createLogger({ service: "test", level: "silent" }),
  });
  return { admission, settled, reserved };
}

describe("Admission", () => {
  it("holds the input bound and every candidate model for a scope with a hard budget", async () => {
    const { admission, reserved } = admissionWith({ hard: true });
    const admitted = await admission.admit(principal, request);
    expect(admitted.reservationId).toBe("res_1");
    expect(reserved[0]).toMatchObject({ model: "a", candidateModels: ["a", "b"], inputTokens: 40, maxOutputTokens: 0 });
  });

  it("has the hold on record before Reserve is sent, so a replica killed in between leaves nothing unsettled", async () => {
    const events: string[] = [];
    const admission = new Admission({
      limiter: {
        acquire: async () => ({ allowed: true, limitedBy: "", remainingRequests: 9, remainingTokens: -1, resetMs: 1 }),
        settle: async () => undefined,
      },
      budgets: { blocked: () => false, hasHard: async () => true },
      cost: {
        reserve: async (input) => {
          events.push(`reserve ${input.requestId}`);
          return input.requestId;
        },
        release: async () => undefined,
      },
      holds: {
        // The record lands a few turns later, as a pipelined Redis write does.
        open: async (hold) => {
          await new Promise((r) => setImmediate(r));
          events.push(`recorded ${hold.reservationId}`);
        },
        close: (id) => events.push(`closed ${id}`),
      },
      logger: createLogger({ service: "test", level: "silent" }),
    });
    expect((await admission.admit(principal, request)).reservationId).toBe("req_1");
    expect(events).toEqual(["recorded req_1", "reserve req_1"]);
  });

  it("reserves nothing where no hard budget applies, and nothing for the admin key", async () => {
    const { admission, reserved } = admissionWith({ hard: false });
    expect((await admission.admit(principal, request)).reservationId).toBe("");
    const hard = admissionWith({ hard: true });
    await hard.admission.admit({ ...principal, admin: true }, request);
    expect([...reserved, ...hard.reserved]).toHaveLength(0);
  });

  it("gives the rate limiter its tokens back when the hold is refused", async () => {
    const { admission, settled } = admissionWith({
      hard: true,
      reserve: async () => {
        throw new Error("over budget");
      },
    });
    await expect(admission.admit(principal, request)).rejects.toThrow("over budget");
    expect(settled).toEqual([0]);
  });
});

describe("Admission concurrency slots", () => {
  const catalog = () =>
    CatalogSchema.parse({
      models: [{ id: "a", engine: "openai", base_url: "http://x/v1", upstream_model: "m", max_concurrent: 2 }],
      limits: { teams: { t: { max_concurrent: 5 } } },
    });

  function withSlots(opts: { hard: boolean; reserve?: Cost["reserve"] }) {
    const asked: ConcurrencyRequest[] = [];
    let released = 0;
    const concurrency: ConcurrencyLimiter = {
      acquire: async (req) => {
        asked.push(req);
        return { release: () => released++ };
      },
    };
    const admission = new Admission({
      limiter: {
        acquire: async () => ({ allowed: true, limitedBy: "", remainingRequests: 9, remainingTokens: -1, resetMs: 1 }),
        settle: async () => undefined,
      },
      budgets: { blocked: () => false, hasHard: async () => opts.hard },
      cost: { reserve: opts.reserve ?? (async () => "res_1"), release: async () => undefined },
      logger: createLogger({ service: "test", level: "silent" }),
      concurrency,
      catalog,
    });
    return { admission, asked, released: () => released };
  }

  it("takes the key, team and model limits in that order at the request's class, and releases them once", async () => {
    const { admission, asked, released } = withSlots({ hard: false });
    const admitted = await admission.admit(
      { ...principal, maxConcurrent: 3 },
      { ...request, limitModel: "a", priority: "batch" },
    );
    expect(asked[0]).toMatchObject({
      priority: "batch",
      limits: [
        { id: "key:k", cap: 3, tenant: "" },
        { id: "team:t", cap: 5, tenant: "key:k" },
        { id: "model:a", cap: 2, tenant: "team:t" },
      ],
    });
    admission.release(admitted);
    admission.release(admitted);
    expect(released()).toBe(1);
  });

  it("gives the slots back when the hard-budget hold is refused", async () => {
    const { admission, released } = withSlots({
      hard: true,
      reserve: async () => {
        throw new Error("refused");
      },
    });
    await expect(admission.admit(principal, { ...request, limitModel: "a" })).rejects.toThrow("refused");
    expect(released()).toBe(1);
  });

  it("asks for no slot when no limit applies (auto, no team limit, no key limit)", async () => {
    const { admission, asked } = withSlots({ hard: false });
    await admission.admit({ ...principal, team: "" }, { ...request, limitModel: undefined });
    expect(asked).toHaveLength(0);
  });
});
