import type { EmbedRequest } from "@tokenmesh/proto/common/v1/chat";
import { AppError } from "@tokenmesh/runtime";
import type { FastifyInstance } from "fastify";
import { z } from "zod";
import type { JobService, JobSubmission } from "../jobs/service.js";
import { jobView } from "../jobs/view.js";
import { toChatRequest } from "./openai.mapping.js";
import { ChatCompletionBody, EmbeddingsBody, firstIssue } from "./openai.schema.js";

const Endpoint = z.enum(["/v1/chat/completions", "/v1/embeddings"]).default("/v1/chat/completions");
const Metadata = z.record(z.string(), z.string()).optional();

const JobBody = z.object({
  endpoint: Endpoint,
  request: z.record(z.string(), z.unknown()),
  callback_url: z.string().min(1).max(2048).optional(),
  metadata: Metadata,
});

const BatchBody = z.object({
  endpoint: Endpoint,
  requests: z.array(z.record(z.string(), z.unknown())).min(1),
  callback_url: z.string().min(1).max(2048).optional(),
  metadata: Metadata,
});

const ListQuery = z.object({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  after: z.string().optional(),
});

function parse<T>(schema: z.ZodType<T>, body: unknown, prefix = ""): T {
  if (body === undefined || body === null || typeof body !== "object") {
    throw new AppError("INVALID_ARGUMENT", "The request body must be a JSON object.", { reason: "invalid_request" });
  }
  const r = schema.safeParse(body);
  if (!r.success) {
    const { message, param } = firstIssue(r.error);
    const at = prefix && param ? `${prefix}.${param}` : prefix || param;
    throw new AppError("INVALID_ARGUMENT", prefix ? message.replace(`'${param || "body"}'`, `'${at}'`) : message, {
      param: at,
      reason: "invalid_value",
    });
  }
  return r.data;
}

/** The mesh requests of a job's body(ies), validated as the sync endpoint validates them. */
function requestsOf(
  endpoint: "/v1/chat/completions" | "/v1/embeddings",
  bodies: Record<string, unknown>[],
  param: (i: number) => string,
): Pick<JobSubmission, "endpoint" | "chat" | "embed" | "encodingFormat"> {
  if (endpoint === "/v1/chat/completions") {
    const chat = bodies.map((b, i) => {
      const body = parse(ChatCompletionBody, b, param(i));
      if (body.stream) {
        throw new AppError("INVALID_ARGUMENT", "A job's answer is stored whole: 'stream' must be false", {
          param: `${param(i)}.stream`,
        });
      }
      return toChatRequest(body);
    });
    return { endpoint: "chat", chat, embed: [], encodingFormat: "float" };
  }
  let encodingFormat: "float" | "base64" = "float";
  const embed = bodies.map((b, i): EmbedRequest => {
    const body = parse(EmbeddingsBody, b, param(i));
    if (body.encoding_format === "base64") encodingFormat = "base64";
    return {
      model: body.model,
      input: typeof body.input === "string" ? [body.input] : body.input,
      user: body.user ?? "",
      ...(body.dimensions !== undefined ? { dimensions: body.dimensions } : {}),
    };
  });
  return { endpoint: "embeddings", chat: [], embed, encodingFormat };
}

/**
 * The async jobs API (OpenAI wire): `POST /v1/jobs` (one request), `POST /v1/jobs/batch` (many, one result),
 * `GET /v1/jobs` (the key's recent jobs, newest first, paged with `limit` and `after`), `GET /v1/jobs/{id}`,
 * `DELETE /v1/jobs/{id}` (cancel), and the key's callback signing secret (`GET /v1/jobs/callback-secret`, and
 * `POST /v1/jobs/callback-secret/rotate`).
 */
export function registerJobRoutes(app: FastifyInstance, deps: { jobs: JobService }): void {
  const { jobs } = deps;

  app.post("/v1/jobs", async (req, reply) => {
    const body = parse(JobBody, req.body);
    const record = await jobs.submit(req.headers.authorization, {
      ...requestsOf(body.endpoint, [body.request], () => "request"),
      batch: false,
      callbackUrl: body.callback_url ?? "",
      metadata: body.metadata ?? {},
    });
    return reply.code(202).send(jobView(record));
  });

  app.post("/v1/jobs/batch", async (req, reply) => {
    const body = parse(BatchBody, req.body);
    const record = await jobs.submit(req.headers.authorization, {
      ...requestsOf(body.endpoint, body.requests, (i) => `requests[${i}]`),
      batch: true,
      callbackUrl: body.callback_url ?? "",
      metadata: body.metadata ?? {},
    });
    return reply.code(202).send(jobView(record));
  });

  app.get("/v1/jobs", async (req, reply) => {
    const q = parse(ListQuery, req.query ?? {});
    const { jobs: page, hasMore } = await jobs.list(req.headers.authorization, q);
    return reply.send({
      object: "list",
      data: page.map((r) => jobView(r, false)),
      first_id: page[0]?.id ?? null,
      last_id: page.at(-1)?.id ?? null,
      has_more: hasMore,
    });
  });

  app.get("/v1/jobs/callback-secret", async (req, reply) => {
    const secret = await jobs.callbackSecret(req.headers.authorization, false);
    return reply.send(secretView(secret));
  });

  app.post("/v1/jobs/callback-secret/rotate", async (req, reply) => {
    const secret = await jobs.callbackSecret(req.headers.authorization, true);
    return reply.send(secretView(secret));
  });

  app.get<{ Params: { id: string } }>("/v1/jobs/:id", async (req, reply) => {
    return reply.send(jobView(await jobs.get(req.headers.authorization, req.params.id)));
  });

  app.delete<{ Params: { id: string } }>("/v1/jobs/:id", async (req, reply) => {
    return reply.send(jobView(await jobs.cancel(req.headers.authorization, req.params.id)));
  });
}

function secretView(secret: string) {
  return {
    object: "job.callback_secret",
    secret,
    header: "x-tokenmesh-signature",
    scheme: "t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.<raw body>' with this secret>",
  };
}
