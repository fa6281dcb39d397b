import { AppError } from "@tokenmesh/runtime";
import type { ZodError } from "zod";
import { firstIssue } from "./openai.schema.js";

/**
 * A request body checked against a zod schema: INVALID_ARGUMENT (`invalid_request`) when it is not a JSON object,
 * INVALID_ARGUMENT (`invalid_value`, with the offending `param`) for the first field that does not fit, worded by
 * `describe` (each wire format words its errors its own way).
 */
export function parseBody<T>(
  schema: { safeParse(v: unknown): { success: true; data: T } | { success: false; error: ZodError } },
  body: unknown,
  describe: (error: ZodError) => { message: string; param: string } = firstIssue,
): T {
  if (body === undefined || body === null || typeof body !== "object") {
    throw new AppError("INVALID_ARGUMENT", "The request body must be a JSON object.", { reason: "invalid_request" });
  }
  const r = schema.safeParse(body);
  if (!r.success) {
    const { message, param } = describe(r.error);
    throw new AppError("INVALID_ARGUMENT", message, { param, reason: "invalid_value" });
  }
  return r.data;
}
