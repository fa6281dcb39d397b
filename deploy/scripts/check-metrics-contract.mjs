#!/usr/bin/env node
// Checks that every metric the alert rules and the Grafana dashboards query is one the services export.
//   - Queries are parsed with the Prometheus project's PromQL grammar (@prometheus-io/lezer-promql): a query that does
//     not parse fails, and every vector selector's metric name is collected.
//   - "Exported" is (a) every metric defined in the TypeScript sources with counter()/gauge()/histogram() (with the
//     _bucket/_sum/_count series of histograms), plus prom-client's default process metrics with the tokenmesh_
//     prefix the runtime registers, plus the series Prometheus itself creates (up, ALERTS, ...) and the rules'
//     recording rules; and (b) with --scrape-dir DIR, also present in the /metrics text that the running services
//     served (*.prom files, as written by test/deploy/scrape-services.mjs).
//   - Names listed in deploy/prometheus/pending-metrics.txt (metrics a dashboard panel already shows but no service
//     exports yet) are reported as warnings instead of failures.
// Usage: check-metrics-contract.mjs [--rules GLOB_DIR] [--dashboards DIR] [--scrape-dir DIR] [--pending FILE]
//                                   [--rules-file F]... [--dashboard-file F]...
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "../..");
const tools = createRequire(join(here, "../tools/package.json"));
const YAML = tools("yaml");
const { parser } = await import(tools.resolve("@prometheus-io/lezer-promql"));

const opts = {
  rulesDir: join(repo, "deploy/prometheus/rules"),
  dashboardsDir: join(repo, "deploy/prometheus/dashboards"),
  pending: join(repo, "deploy/prometheus/pending-metrics.txt"),
  scrapeDir: undefined,
  ruleFiles: [],
  dashboardFiles: [],
};
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const v = argv[++i];
  switch (argv[i - 1]) {
    case "--rules":
      opts.rulesDir = v;
      break;
    case "--dashboards":
      opts.dashboardsDir = v;
      break;
    case "--scrape-dir":
      opts.scrapeDir = v;
      break;
    case "--pending":
      opts.pending = v;
      break;
    case "--rules-file":
      opts.ruleFiles.push(v);
      break;
    case "--dashboard-file":
      opts.dashboardFiles.push(v);
      break;
    default:
      console.error(`unknown argument ${argv[i - 1]}`);
      process.exit(2);
  }
}
const listDir = (dir, re) =>
  existsSync(dir)
    ? readdirSync(dir)
        .filter((f) => re.test(f))
        .map((f) => join(dir, f))
    : [];
if (opts.ruleFiles.length === 0) opts.ruleFiles = listDir(opts.rulesDir, /\.ya?ml$/);
if (opts.dashboardFiles.length === 0) opts.dashboardFiles = listDir(opts.dashboardsDir, /\.json$/);

// --- what the services export ------------------------------------------------------------------------------------
function sourceFiles(dir) {
  const out = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (!["node_modules", "dist", "gen"].includes(e.name)) out.push(...sourceFiles(p));
    } else if (/\.ts$/.test(e.name) && !/\.(test|int\.test)\.ts$/.test(e.name) && !e.name.endsWith(".d.ts"))
      out.push(p);
  }
  return out;
}
const defined = new Map(); // name -> { type, file }
for (const root of ["packages", "services"]) {
  for (const pkg of readdirSync(join(repo, root))) {
    const src = join(repo, root, pkg, "src");
    if (!existsSync(src)) continue;
    for (const file of sourceFiles(src)) {
      const text = readFileSync(file, "utf8");
      for (const m of text.matchAll(/\b(counter|gauge|histogram)\(\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"/g))
        defined.set(m[2], { type: m[1], file: relative(repo, file) });
    }
  }
}
// prom-client's default metrics, as the runtime registers them (collectProcessMetrics: prefix tokenmesh_).
{
  const promClient = createRequire(join(repo, "packages/telemetry/package.json"))("prom-client");
  const registry = new promClient.Registry();
  promClient.collectDefaultMetrics({ register: registry, prefix: "tokenmesh_" });
  for (const m of await registry.getMetricsAsJSON())
    defined.set(m.name, { type: m.type, file: "prom-client defaults" });
}
const withSeries = (name, type) =>
  type === "histogram"
    ? [`${name}_bucket`, `${name}_sum`, `${name}_count`]
    : type === "summary"
      ? [name, `${name}_sum`, `${name}_count`]
      : [name];
const sourceSeries = new Set([...defined].flatMap(([n, { type }]) => withSeries(n, type)));
const PROMETHEUS_SERIES = new Set([
  "up",
  "scrape_duration_seconds",
  "scrape_samples_scraped",
  "scrape_samples_post_metric_relabeling",
  "scrape_series_added",
  "ALERTS",
  "ALERTS_FOR_STATE",
]);

let liveSeries;
if (opts.scrapeDir) {
  liveSeries = new Set();
  const files = listDir(opts.scrapeDir, /\.prom$/);
  if (files.length === 0) {
    console.error(`no *.prom files in ${opts.scrapeDir}`);
    process.exit(1);
  }
  for (const f of files)
    for (const m of readFileSync(f, "utf8").matchAll(/^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)$/gm))
      for (const s of withSeries(m[1], m[2])) liveSeries.add(s);
}
const pending = new Set(
  existsSync(opts.pending)
    ? readFileSync(opts.pending, "utf8")
        .split("\n")
        .map((l) => l.replace(/#.*/, "").trim())
        .filter(Boolean)
    : [],
);

// --- what the rules and dashboards query -------------------------------------------------------------------------
const problems = [];
const warnings = [];
const queries = []; // { where, expr }
const recorded = new Set();
for (const file of opts.ruleFiles) {
  let doc;
  try {
    doc = YAML.parse(readFileSync(file, "utf8"));
  } catch (err) {
    problems.push(`${relative(repo, file)}: not valid YAML: ${err.message}`);
    continue;
  }
  for (const g of doc?.groups ?? [])
    for (const r of g.rules ?? []) {
      if (r.record) recorded.add(r.record);
      queries.push({ where: `${relative(repo, file)} ${r.alert ?? r.record}`, expr: String(r.expr ?? "") });
    }
}
for (const file of opts.dashboardFiles) {
  let dash;
  try {
    dash = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    problems.push(`${relative(repo, file)}: not valid JSON: ${err.message}`);
    continue;
  }
  if (!dash.uid || !dash.title) problems.push(`${relative(repo, file)}: a dashboard needs uid and title`);
  const panels = (dash.panels ?? []).flatMap((p) => [p, ...(p.panels ?? [])]);
  if (panels.filter((p) => p.type !== "row").length === 0) problems.push(`${relative(repo, file)}: no panels`);
  for (const p of panels) {
    if (p.type === "row") continue;
    if (!p.targets?.length) problems.push(`${relative(repo, file)} panel "${p.title}": no queries`);
    for (const t of p.targets ?? []) {
      if (!t.expr) problems.push(`${relative(repo, file)} panel "${p.title}" ${t.refId}: empty query`);
      else queries.push({ where: `${relative(repo, file)} panel "${p.title}"`, expr: t.expr });
    }
  }
}

// Grafana's variables are not PromQL: replace them with values of the right kind before parsing.
const grafanaToPromQL = (expr) =>
  expr
    .replace(/\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}/g, "5m")
    .replace(/\$\{?[a-zA-Z_]\w*\}?/g, "x");

const used = new Map(); // series -> [where]
for (const { where, expr } of queries) {
  const text = grafanaToPromQL(expr);
  const tree = parser.parse(text);
  let syntaxError;
  tree.iterate({
    enter(node) {
      if (node.type.isError && syntaxError === undefined) syntaxError = node.from;
      if (node.name === "Identifier" && node.node.parent?.name === "VectorSelector") {
        const name = text.slice(node.from, node.to);
        if (!used.has(name)) used.set(name, []);
        used.get(name).push(where);
      }
    },
  });
  if (syntaxError !== undefined)
    problems.push(
      `${where}: PromQL does not parse near "${text.slice(Math.max(0, syntaxError - 20), syntaxError + 20)}"`,
    );
}

for (const [name, where] of used) {
  const known = sourceSeries.has(name) || PROMETHEUS_SERIES.has(name) || recorded.has(name);
  const live = !liveSeries || liveSeries.has(name) || PROMETHEUS_SERIES.has(name) || recorded.has(name);
  const at = [...new Set(where)].join("; ");
  if (known && live) continue;
  const why = !known ? "no service defines it" : "no running service exported it";
  if (pending.has(name)) warnings.push(`${name}: ${why} (listed as pending) — used by ${at}`);
  else problems.push(`${name}: ${why} — used by ${at}`);
}
for (const name of pending)
  if (sourceSeries.has(name) && (!liveSeries || liveSeries.has(name)))
    warnings.push(`${name} is exported now: remove it from ${relative(repo, opts.pending)}`);

console.log(
  `metrics contract: ${queries.length} queries in ${opts.ruleFiles.length} rule file(s) and ${opts.dashboardFiles.length} dashboard(s) use ${used.size} series; ` +
    `${sourceSeries.size} series defined in code${liveSeries ? `, ${liveSeries.size} exported by the running services` : ""}`,
);
for (const w of warnings) console.log(`  warning: ${w}`);
if (problems.length) {
  for (const p of problems) console.log(`  FAIL ${p}`);
  process.exit(1);
}
console.log("  ok: every queried metric is exported");
