// Runs `promtool check metrics` on exposition text and separates findings on prom-client's default process metrics
// (three gauges whose names end in _total, kept by prom-client for compatibility) from every other finding.
import { spawnSync } from "node:child_process";

const PROM_CLIENT_DEFAULT_FINDINGS = [
  /^tokenmesh_nodejs_active_(handles|requests|resources)_total non-counter metrics should not have "_total" suffix$/,
];

/**
 * Lints `text` with promtool. `problems` are the findings that fail the check; `ignored` the prom-client ones.
 * Throws when promtool cannot be run.
 */
export function lintMetrics(text) {
  const r = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
  if (r.error) throw r.error;
  const findings = (r.stdout + r.stderr)
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);
  const ignored = findings.filter((f) => PROM_CLIENT_DEFAULT_FINDINGS.some((re) => re.test(f)));
  const problems = findings.filter((f) => !ignored.includes(f));
  // promtool exits non-zero on any finding; a non-zero exit with nothing printed is still a failure.
  if (r.status !== 0 && findings.length === 0) problems.push(`promtool exited ${r.status}`);
  return { problems, ignored };
}
