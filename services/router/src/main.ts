import { runMain } from "@tokenmesh/runtime";
import { createApp } from "./app.js";
import { RouterConfigSchema } from "./config.js";

await runMain("router", RouterConfigSchema, createApp);
