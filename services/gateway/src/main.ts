import { runMain } from "@tokenmesh/runtime";
import { createApp } from "./app.js";
import { GatewayConfigSchema } from "./config.js";

await runMain("gateway", GatewayConfigSchema, createApp);
