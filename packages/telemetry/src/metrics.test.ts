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

describe("LabelledHistogram", () => {
  it("reports what prom-client's Histogram reports for the same observations, across reset, zero and remove", async () => {
    const { Histogram } = await import("prom-client");
    const { LabelledHistogram } = await import("./metrics.js");
    const config = { help: "h", labelNames: ["a", "b"] as const, buckets: [0.01, 0.1, 1], registers: [] };
    const plain = new Histogram({ ...config, name: "plain_seconds" });
    const fast = new LabelledHistogram({ ...config, name: "fast_seconds" });
    let seed = 7;
    const random = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const sets = [{ a: "x", b: "1" }, { a: "x", b: 2 }, { a: "y", b: "1" }, { a: "x" }, { a: "x\u0001", b: "" }];
    const both = (f: (h: typeof plain) => void) => {
      f(plain);
      f(fast);
    };
    const same = async () => {
      const [p, q] = [await plain.get(), await fast.get()];
      const strip = (v: typeof p.values) => v.map((x) => ({ ...x, metricName: x.metricName?.replace(/^\w+?_/, "") }));
      expect(strip(q.values)).toEqual(strip(p.values));
    };
    for (let round = 0; round < 4; round++) {
      for (let i = 0; i < 500; i++) {
        const labels = sets[Math.floor(random() * sets.length)]!;
        const value = random() < 0.1 ? 5 : random() * 1.2;
        both((h) => h.observe(labels, value));
      }
      await same();
      if (round === 0) both((h) => h.reset());
      if (round === 1) both((h) => h.zero({ a: "x", b: "1" }));
      if (round === 2) both((h) => h.remove({ a: "y", b: "1" }));
      await same();
    }
    // A value prom-client refuses is refused the same way.
    expect(() => fast.observe({ a: "x", b: "1" }, Number.NaN)).toThrow(/not a valid number/);
    // A label outside the label names is refused when its values are new (as in prom-client; the types refuse it).
    expect(() => fast.observe({ a: "new", c: "1" } as never, 1)).toThrow(/not included/);
  });
});
