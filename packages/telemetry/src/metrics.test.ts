import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

// The built module (`npm test` builds first), run in a child: the metrics start once per process.
const metricsModule = fileURLToPath(new URL("../dist/metrics.js", import.meta.url));

/** Voluntary context switches of an idle process over `ms` once the process metrics run (a count, not a time). */
function idleWakeUps(ms: number, precision?: number): { switches: number; lag: boolean } {
  const script = `
    const m = await import(${JSON.stringify(metricsModule)});
    ${precision === undefined ? "m.collectProcessMetrics();" : `(await import("prom-client")).collectDefaultMetrics({ register: m.registry, prefix: "t_", eventLoopMonitoringPrecision: ${precision} });`}
    await new Promise((r) => setTimeout(r, 300));
    const before = process.resourceUsage().voluntaryContextSwitches;
    await new Promise((r) => setTimeout(r, ${ms}));
    const switches = process.resourceUsage().voluntaryContextSwitches - before;
    const text = await m.registry.metrics();
    console.log(JSON.stringify({ switches, lag: /eventloop_lag_p99_seconds \\d/.test(text) }));
  `;
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
    encoding: "utf8",
    cwd: fileURLToPath(new URL("..", import.meta.url)),
  });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout.trim().split("\n").at(-1) ?? "{}");
}

describe("process metrics", () => {
  it("sample the event loop without waking an idle process a hundred times a second", () => {
    const ours = idleWakeUps(1_000);
    // The lag percentiles are still there; the sampling timer fires ~10 times in that second (prom-client's default
    // precision, 10 ms, gives ~100).
    expect(ours.lag).toBe(true);
    expect(ours.switches).toBeLessThan(50);
    expect(idleWakeUps(1_000, 10).switches).toBeGreaterThan(ours.switches * 2);
  });
});
