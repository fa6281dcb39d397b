#!/usr/bin/env node
import { run } from "./cli.js";

// The only file with side effects: wire the process's streams and signals to `run` and exit with its code.
const controller = new AbortController();
const interrupt = (): void => {
  // A second Ctrl-C while shutting down means "now".
  if (controller.signal.aborted) process.exit(130);
  controller.abort();
};
process.on("SIGINT", interrupt);
process.on("SIGTERM", interrupt);
// `tokenmesh usage tail | head` closes our stdout: stop quietly instead of crashing on EPIPE.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") controller.abort();
  else throw err;
});

const code = await run(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  signal: controller.signal,
  stdin: async () => {
    let text = "";
    for await (const chunk of process.stdin) text += chunk;
    return text;
  },
});
process.exitCode = code;
// Should a library leave a handle open, exit anyway (unref: this timer alone keeps nothing alive).
setTimeout(() => process.exit(code), 2_000).unref();
