import { homedir } from "node:os";
import { join } from "node:path";
import { commonEnv, env } from "@tokenmesh/runtime";
import { z } from "zod";

/** The inference service's environment; the only reader of process.env in this service. */
export const InferenceConfigSchema = z.object({
  ...commonEnv,
  INFERENCE_HOST: env.host(),
  INFERENCE_GRPC_PORT: env.port(50054),
  INFERENCE_OPS_PORT: env.port(9104),
  MESH_CONFIG: z.string().min(1).default("config/mesh.yaml"),
  /** Where `hf:` model sources are downloaded. */
  INFERENCE_MODELS_DIR: z
    .string()
    .min(1)
    .default(join(homedir(), ".cache", "tokenmesh", "models")),
  /** "auto" uses CUDA, Vulkan or Metal when a build and device are present, else the CPU; "false" forces the CPU. */
  INFERENCE_GPU: z.enum(["auto", "false"]).default("auto"),
});

export type InferenceConfig = z.infer<typeof InferenceConfigSchema>;
