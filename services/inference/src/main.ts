import { runMain } from "@tokenmesh/runtime";
import { createApp } from "./app.js";
import { InferenceConfigSchema } from "./config.js";

await runMain("inference", InferenceConfigSchema, createApp);
