import { homedir } from "node:os";
import { join } from "node:path";
import { commonEnv, env } from "@tokenmesh/runtime";
import { z } from "zod";
import { CPU_LIST } from "./cpu-affinity.js";

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
  /**
   * Keep the whole service on these CPUs (a list such as `1` or `2-7`, as `taskset -c` takes it); unset: wherever the
   * scheduler puts it. See cpu-affinity.ts for why a CPU host without a CPU manager wants it.
   */
  INFERENCE_CPU_AFFINITY: z.string().regex(CPU_LIST, "expected a CPU list such as 1, 2-7 or 0,2,4-5").optional(),
});

export type InferenceConfig = z.infer<typeof InferenceConfigSchema>;
