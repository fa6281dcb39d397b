import { runMain } from "@tokenmesh/runtime";
import { createApp } from "./app.js";
import { GuardConfigSchema } from "./config.js";

await runMain("guard", GuardConfigSchema, createApp);
