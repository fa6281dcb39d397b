import { runMain } from "@tokenmesh/runtime";
import { createApp } from "./app.js";
import { CostConfigSchema } from "./config.js";

await runMain("cost", CostConfigSchema, createApp);
