import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { credentials, loadPackageDefinition, makeGenericClientConstructor, status } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { CostServiceClient, CostServiceService, GetUsageRequest, Scope } from "@tokenmesh/proto/cost/v1/cost";
import { createLogger } from "@tokenmesh/telemetry";
import { grpcHealth, waitFor } from "@tokenmesh/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AppError, BudgetExceededError, callUnary, createGrpcClient, GrpcServer } from "../src/index.js";

const logger = createLogger({ service: "runtime-test", level: "silent" });
let server: GrpcServer;
let port: number;
/** The signals getUsage saw, how many getBudget calls reached the handler, and why getBudget's signal was aborted. */
const usageSignals: AbortSignal[] = [];
let budgetCalls = 0;
let budgetAbortReason: unknown;

beforeAll(async () => {
  server = new GrpcServer({ logger });
  // A test double of the cost service: each method exercises one path of the server wrapper.
  server.add(CostServiceService, {
    async reserve() {
      throw new BudgetExceededError("over the test budget");
    },
    async release() {
      throw new TypeError("a bug with private details");
    },
    async getUsage(req, ctx) {
      usageSignals.push(ctx.signal);
      return {
        totals: { costUsd: req.scope, requests: 1, inputTokens: 0, outputTokens: 0, cachedTokens: 0, errors: 0 },
        byModel: {},
      };
    },
    async getBudget(_req, ctx) {
      budgetCalls++;
      // Waits for its signal; the timer only bounds a test that went wrong.
      await new Promise((resolve, reject) => {
        const t = setTimeout(resolve, 5_000);
        ctx.signal.addEventListener("abort", () => {
          budgetAbortReason = ctx.signal.reason;
          clearTimeout(t);
          reject(ctx.signal.reason);
        });
      });
      return { found: false, spentUsd: 0, heldUsd: 0 };
    },
    async setBudget(req) {
      if (req.budget?.id.startsWith("huge:"))
        throw new AppError("NOT_FOUND", `no scope ${req.budget.id}`, { param: req.budget.id });
      return { budget: req.budget, scopeHard: false };
    },
    async listHardScopes() {
      return { scopes: [] };
    },
  });
  port = await server.listen("127.0.0.1", 0);
  server.setServing(true);
});

afterAll(async () => {
  await server.shutdown(1_000);
});

describe("GrpcServer", () => {
  it("serves grpc.health.v1 for the server and each service", async () => {
    expect(await grpcHealth(`127.0.0.1:${port}`)).toBe("SERVING");
    expect(await grpcHealth(`127.0.0.1:${port}`, "tokenmesh.cost.v1.CostService")).toBe("SERVING");
    server.setServing(false);
    expect(await grpcHealth(`127.0.0.1:${port}`, "tokenmesh.cost.v1.CostService")).toBe("NOT_SERVING");
    server.setServing(true);
  });

  it("serves reflection for every Tokenmesh service", async () => {
    const require = createRequire(import.meta.url);
    const protoDir = join(dirname(require.resolve("@grpc/reflection/package.json")), "build/proto");
    const def = loadSync(join(protoDir, "grpc/reflection/v1/reflection.proto"), { includeDirs: [protoDir] });
    const pkg = loadPackageDefinition(def) as unknown as {
      grpc: {
        reflection: {
          v1: {
            ServerReflection: new (
              a: string,
              c: ReturnType<typeof credentials.createInsecure>,
            ) => { serverReflectionInfo(): NodeJS.ReadWriteStream & { write(m: unknown): void; end(): void } };
          };
        };
      };
    };
    const client = new pkg.grpc.reflection.v1.ServerReflection(`127.0.0.1:${port}`, credentials.createInsecure());
    const call = client.serverReflectionInfo();
    const answer = await new Promise<{ listServicesResponse?: { service: { name: string }[] } }>((resolve, reject) => {
      call.on("data", resolve);
      call.on("error", reject);
      call.write({ listServices: "" });
    });
    call.end();
    const names = answer.listServicesResponse!.service.map((s) => s.name);
    // Exactly the services this server registered, described from the build's descriptor set.
    expect(names).toEqual(["tokenmesh.cost.v1.CostService"]);
  });

  it("maps AppErrors to status with details, and hides unknown errors as INTERNAL", async () => {
    const client = createGrpcClient(CostServiceClient, `127.0.0.1:${port}`);
    try {
      const refused = await callUnary(client.reserve.bind(client), {
        requestId: "r",
        keyId: "k",
        team: "",
        user: "",
        model: "m",
        inputTokens: 1,
        maxOutputTokens: 1,
        candidateModels: [],
      }).catch((e: AppError) => e);
      expect(refused).toMatchObject({
        code: "RESOURCE_EXHAUSTED",
        reason: "insufficient_quota",
        message: "over the test budget",
      });
      const bug = await callUnary(client.release.bind(client), { reservationId: "x" }).catch((e: AppError) => e);
      expect(bug).toMatchObject({ code: "INTERNAL", message: "Internal error" });
      const ok = await callUnary(client.getUsage.bind(client), {
        scope: Scope.SCOPE_TEAM,
        id: "t",
        period: 0,
        startDay: "",
        endDay: "",
      });
      expect(ok.totals?.costUsd).toBe(Scope.SCOPE_TEAM);
    } finally {
      client.close();
    }
  });

  it("refuses a request that does not decode INVALID_ARGUMENT, not INTERNAL", async () => {
    const raw = new (makeGenericClientConstructor({}, "Raw"))(`127.0.0.1:${port}`, credentials.createInsecure());
    const code = await new Promise<number>((resolve) => {
      raw.makeUnaryRequest(
        "/tokenmesh.cost.v1.CostService/GetUsage",
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]), // field 1, a length far past the end
        (err) => resolve(err?.code ?? 0),
      );
    });
    raw.close();
    expect(code).toBe(status.INVALID_ARGUMENT);
  });

  it("clips a status message that echoes a huge client value, and the channel keeps working", async () => {
    const client = createGrpcClient(CostServiceClient, `127.0.0.1:${port}`);
    const scopeId = `huge:${"x".repeat(200_000)}`;
    const err = (await callUnary(client.setBudget.bind(client), {
      budget: { scope: Scope.SCOPE_KEY, id: scopeId, period: 1, limitUsd: 1, hard: false, thresholds: [] },
    }).catch((e) => e)) as AppError;
    expect(err.code).toBe("NOT_FOUND");
    expect(err.message.length).toBeLessThanOrEqual(1_024);
    // The same channel still answers: the trailers did not overflow the client's header limit.
    const usage = await callUnary(
      client.getUsage.bind(client),
      GetUsageRequest.fromPartial({ scope: Scope.SCOPE_KEY }),
    );
    expect(usage.totals?.requests).toBe(1);
    client.close();
  });

  it("aborts the handler's signal when the caller's deadline passes", async () => {
    const client = createGrpcClient(CostServiceClient, `127.0.0.1:${port}`);
    try {
      const started = Date.now();
      const err = await callUnary(
        client.getBudget.bind(client),
        { scope: Scope.SCOPE_KEY, id: "k", period: 1 },
        { deadlineMs: 200 },
      ).catch((e: AppError) => e);
      expect((err as AppError).code).toBe("DEADLINE_EXCEEDED");
      expect(Date.now() - started).toBeLessThan(4_000);
      await waitFor(() => server.inFlight === 0, { timeoutMs: 4_000, description: "the call to end on the server" });
    } finally {
      client.close();
    }
  });

  it("aborts the handler's signal with CANCELLED when the caller cancels", async () => {
    const client = createGrpcClient(CostServiceClient, `127.0.0.1:${port}`);
    try {
      budgetAbortReason = undefined;
      const callsBefore = budgetCalls;
      const ac = new AbortController();
      const pending = callUnary(
        client.getBudget.bind(client),
        { scope: Scope.SCOPE_KEY, id: "k", period: 1 },
        {
          signal: ac.signal,
        },
      ).catch((e: AppError) => e);
      // Cancel once the call is in the handler (a cancel before it arrives never reaches the handler's signal).
      await waitFor(() => budgetCalls > callsBefore, { description: "the call to reach the handler" });
      ac.abort();
      expect(((await pending) as AppError).code).toBe("CANCELLED");
      await waitFor(() => budgetAbortReason !== undefined, { description: "the handler's signal to be aborted" });
      expect((budgetAbortReason as AppError | undefined)?.code).toBe("CANCELLED");
    } finally {
      client.close();
    }
  });

  it("never aborts the signal of a call that has answered (grpc-js reports its close as 'cancelled')", async () => {
    const client = createGrpcClient(CostServiceClient, `127.0.0.1:${port}`);
    try {
      usageSignals.length = 0;
      for (let i = 0; i < 3; i++) {
        await callUnary(client.getUsage.bind(client), GetUsageRequest.fromPartial({ scope: Scope.SCOPE_KEY, id: "k" }));
      }
      // A later call on the same connection has answered: the server has closed the streams of the first three,
      // and any "cancelled" their close raised has been handled.
      await callUnary(client.setBudget.bind(client), { budget: undefined });
      expect(usageSignals).toHaveLength(3);
      expect(usageSignals.map((s) => s.aborted)).toEqual([false, false, false]);
    } finally {
      client.close();
    }
  });
});
