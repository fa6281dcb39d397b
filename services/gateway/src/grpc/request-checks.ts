import type { ChatRequest, EmbedRequest } from "@tokenmesh/proto/common/v1/chat";
import { AppError } from "@tokenmesh/runtime";
import { MAX_SCHEMA_DEPTH, nestedDeeperThan } from "../domain/json-depth.js";

// The gRPC front door refuses what the HTTP API's schema refuses (openai.schema.ts): protobuf lets a client send
// any double or int32, and values out of OpenAI's bounds reach engines that do not expect them (an extreme
// presence penalty with a JSON response format makes the local engine's sampler fail and never answer).

function invalid(param: string, message: string): AppError {
  return new AppError("INVALID_ARGUMENT", `Invalid value for '${param}': ${message}`, {
    param,
    reason: "invalid_value",
  });
}

function between(value: number | undefined, min: number, max: number, param: string): void {
  if (value === undefined) return;
  if (!Number.isFinite(value) || value < min || value > max) throw invalid(param, `must be from ${min} to ${max}`);
}

/** Throws INVALID_ARGUMENT (with the param at fault) for a chat request the HTTP API would refuse. */
export function checkChatRequest(request: ChatRequest): void {
  between(request.temperature, 0, 2, "temperature");
  between(request.topP, 0, 1, "top_p");
  between(request.presencePenalty, -2, 2, "presence_penalty");
  between(request.frequencyPenalty, -2, 2, "frequency_penalty");
  if (request.maxTokens !== undefined && request.maxTokens < 1) throw invalid("max_tokens", "must be at least 1");
  if (request.topK !== undefined && request.topK < 0) throw invalid("top_k", "must not be negative");
  // 0 is proto3's unset, meaning 1.
  if (request.n < 0 || request.n > 128) throw invalid("n", "must be from 1 to 128");
  if (request.stop.length > 4) throw invalid("stop", "at most 4 sequences");
  request.tools.forEach((tool, i) => {
    if (nestedDeeperThan(tool.function?.parameters, MAX_SCHEMA_DEPTH)) {
      throw invalid(`tools[${i}].function.parameters`, `nested more than ${MAX_SCHEMA_DEPTH} levels deep`);
    }
  });
  if (nestedDeeperThan(request.responseFormat?.jsonSchema?.schema, MAX_SCHEMA_DEPTH)) {
    throw invalid("response_format.json_schema.schema", `nested more than ${MAX_SCHEMA_DEPTH} levels deep`);
  }
}

/** Throws INVALID_ARGUMENT for an embeddings request the HTTP API would refuse. */
export function checkEmbedRequest(request: EmbedRequest): void {
  if (request.input.length === 0 || request.input.length > 2048) throw invalid("input", "give 1 to 2048 inputs");
  if (request.dimensions !== undefined && request.dimensions < 1) throw invalid("dimensions", "must be at least 1");
}
