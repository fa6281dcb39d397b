import {
  type GenerateStreamRequest,
  type GenerateStreamResponse,
  InferenceServiceService,
} from "@tokenmesh/proto/inference/v1/inference";
import { type Handlers, Multiplexed } from "@tokenmesh/runtime";

/**
 * A stand-in InferenceService's handlers with `generate` served on a call of its own and on the shared streams
 * (GenerateStream, what the router uses), as the real service serves it.
 */
export function inferenceServing(
  handlers: Omit<Handlers<typeof InferenceServiceService>, "generateStream">,
): Handlers<typeof InferenceServiceService> {
  return {
    ...handlers,
    generateStream: new Multiplexed<GenerateStreamRequest, GenerateStreamResponse>(
      InferenceServiceService.generate.path,
      handlers.generate,
    ),
  };
}
