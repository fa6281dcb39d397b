// Each deploy checker, fed one broken input, must fail; fed the same input unbroken, must pass (so the failure is the
// break's). Run by deploy/scripts/validate.sh: `node --test test/deploy/checkers.test.mjs` (node's runner, not
// vitest). Works on copies in a temp dir; the repo is never modified.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { lintMetrics } from "./promtool-lint.mjs";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const scripts = join(repo, "deploy/scripts");
let tmp;
before(() => {
  tmp = mkdtempSync(join(tmpdir(), "tokenmesh-deploy-checks-"));
});
after(() => rmSync(tmp, { recursive: true, force: true }));

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: "utf8", ...opts });
  if (r.error) throw r.error;
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}
const node = (script, args, opts) => run(process.execPath, [join(scripts, script), ...args], opts);

/** Copies `rel` (a repo path) into a fresh dir and returns the copy's path. */
function copy(rel, name) {
  const dest = join(tmp, name, rel);
  mkdirSync(dirname(dest), { recursive: true });
  cpSync(join(repo, rel), dest, { recursive: true });
  return dest;
}
/** Replaces `from` (which must occur) with `to` in a file. */
function edit(file, from, to) {
  const text = readFileSync(file, "utf8");
  assert.ok(text.includes(from), `${file} does not contain ${JSON.stringify(from)}`);
  writeFileSync(file, text.replace(from, to));
}
function expectFail(r, pattern) {
  assert.notEqual(r.code, 0, `expected a failure, got exit 0:\n${r.out}`);
  assert.match(r.out, pattern);
}

describe("check-k8s (kustomize build + Kubernetes schemas + deployment rules)", () => {
  const k8s = (name) => copy("deploy/k8s", name);
  const check = (dir) => node("check-k8s.mjs", [join(dir, "overlays/dev")]);

  it("passes the unmodified dev overlay", () => {
    const r = check(k8s("k8s-ok"));
    assert.equal(r.code, 0, r.out);
  });
  it("fails a container port that is not an integer (schema)", () => {
    const dir = k8s("k8s-schema");
    edit(join(dir, "base/guard.yaml"), "containerPort: 50052", 'containerPort: "grpc"');
    expectFail(check(dir), /containerPort must be integer/);
  });
  it("fails a misspelled field (strict fields)", () => {
    const dir = k8s("k8s-typo");
    edit(join(dir, "base/router.yaml"), "readinessProbe:", "readinesProbe:");
    expectFail(check(dir), /unknown field "readinesProbe"/);
  });
  it("fails a grace period shorter than preStop + shutdown deadline", () => {
    const dir = k8s("k8s-grace");
    edit(join(dir, "base/cost.yaml"), "terminationGracePeriodSeconds: 15", "terminationGracePeriodSeconds: 5");
    expectFail(check(dir), /terminationGracePeriodSeconds 5/);
  });
  it("fails a NetworkPolicy whose allowed caller matches no workload", () => {
    const dir = k8s("k8s-netpol");
    edit(
      join(dir, "base/network-policies.yaml"),
      "app.kubernetes.io/name: gateway\n      ports:\n        - port: grpc",
      "app.kubernetes.io/name: gatewy\n      ports:\n        - port: grpc",
    );
    expectFail(check(dir), /matches no workload/);
  });
  it("fails a kustomization that does not build", () => {
    const dir = k8s("k8s-build");
    edit(join(dir, "base/kustomization.yaml"), "  - cost.yaml", "  - costs.yaml");
    expectFail(check(dir), /kustomize build failed/);
  });
});

describe("check-compose (docker-compose config -q + stack invariants)", () => {
  const compose = (name) => {
    const dir = copy("deploy/compose", name);
    copy("deploy/prometheus", name);
    symlinkSync(join(repo, "config"), join(tmp, name, "config"));
    return dir;
  };
  it("passes the unmodified stack", () => {
    const r = node("check-compose.mjs", [compose("compose-ok")]);
    assert.equal(r.code, 0, r.out);
  });
  it("fails a compose file docker-compose rejects", () => {
    const dir = compose("compose-invalid");
    edit(
      join(dir, "docker-compose.yml"),
      "      - nats-data:/data",
      "      - nats-data:/data\n    restart_policy: always",
    );
    expectFail(node("check-compose.mjs", [dir]), /docker-compose config -q failed/);
  });
  it("fails an ops port in .env that Prometheus does not scrape", () => {
    const dir = compose("compose-port");
    edit(join(dir, ".env"), "ROUTER_OPS_PORT=9103", "ROUTER_OPS_PORT=9113");
    expectFail(node("check-compose.mjs", [dir]), /no scrape target router:9113/);
  });
  it("fails services left to size the young generation from the host's memory", () => {
    const dir = compose("compose-semi-space");
    edit(join(dir, "docker-compose.yml"), "  NODE_OPTIONS: --max-semi-space-size=16\n", "");
    expectFail(node("check-compose.mjs", [dir]), /gateway: NODE_OPTIONS must set --max-semi-space-size/);
  });
  it("fails a GPU overlay without a device reservation", () => {
    const dir = compose("compose-gpu");
    edit(
      join(dir, "docker-compose.gpu.yml"),
      "              capabilities: [gpu]",
      "              capabilities: [compute]",
    );
    expectFail(node("check-compose.mjs", [dir]), /reserves no nvidia device/);
  });
});

describe("check-dockerfile", () => {
  const dockerfile = (name) => {
    const dir = join(tmp, name);
    mkdirSync(dir, { recursive: true });
    cpSync(join(repo, "Dockerfile"), join(dir, "Dockerfile"));
    cpSync(join(repo, ".dockerignore"), join(dir, ".dockerignore"));
    return join(dir, "Dockerfile");
  };
  it("passes the unmodified Dockerfile", () => {
    const r = node("check-dockerfile.mjs", [dockerfile("docker-ok")]);
    assert.equal(r.code, 0, r.out);
  });
  it("fails a runtime image that runs as root", () => {
    const file = dockerfile("docker-root");
    const text = readFileSync(file, "utf8");
    writeFileSync(file, text.slice(0, text.lastIndexOf("USER node")) + text.slice(text.lastIndexOf("USER node") + 9));
    expectFail(node("check-dockerfile.mjs", [file]), /runtime: must switch to a non-root USER/);
  });
  it("fails a production install that brings the optional GPU builds back", () => {
    const file = dockerfile("docker-optional");
    edit(file, "--omit=dev --omit=optional", "--omit=dev");
    expectFail(node("check-dockerfile.mjs", [file]), /--omit=optional/);
  });
});

describe("promtool check rules / test rules", () => {
  const prom = (name) => copy("deploy/prometheus", name);
  it("check rules fails a rule whose PromQL does not parse", () => {
    const dir = prom("rules-syntax");
    edit(
      join(dir, "rules/tokenmesh-alerts.yml"),
      "(tokenmesh_inference_queue_depth) > 16",
      "(tokenmesh_inference_queue_depth) > > 16",
    );
    expectFail(run("promtool", ["check", "rules", join(dir, "rules/tokenmesh-alerts.yml")]), /FAILED|error/i);
  });
  it("test rules passes the unmodified rules and fails a changed threshold", () => {
    const ok = prom("rules-ok");
    assert.equal(run("promtool", ["test", "rules", join(ok, "tests/tokenmesh-alerts.test.yml")]).code, 0);
    const dir = prom("rules-threshold");
    edit(
      join(dir, "rules/tokenmesh-alerts.yml"),
      "(tokenmesh_inference_queue_depth) > 16",
      "(tokenmesh_inference_queue_depth) > 100",
    );
    expectFail(run("promtool", ["test", "rules", join(dir, "tests/tokenmesh-alerts.test.yml")]), /FAILED/);
  });
});

describe("promtool check metrics (as the live check runs it)", () => {
  const good =
    "# HELP tokenmesh_x_requests_total Requests.\n# TYPE tokenmesh_x_requests_total counter\ntokenmesh_x_requests_total 1\n";
  it("passes a well-formed exposition", () => {
    assert.deepEqual(lintMetrics(good).problems, []);
  });
  it("fails a counter without the _total suffix", () => {
    const bad = "# HELP tokenmesh_x_requests Requests.\n# TYPE tokenmesh_x_requests counter\ntokenmesh_x_requests 1\n";
    assert.ok(lintMetrics(bad).problems.some((p) => /_total/.test(p)));
  });
  it("fails an exposition that does not parse", () => {
    assert.ok(lintMetrics(`${good}tokenmesh_x_requests_total{code="OK" 1\n`).problems.length > 0);
  });
  it("ignores only prom-client's default _total gauges", () => {
    const defaults =
      "# HELP tokenmesh_nodejs_active_handles_total Handles.\n# TYPE tokenmesh_nodejs_active_handles_total gauge\ntokenmesh_nodejs_active_handles_total 3\n";
    const r = lintMetrics(defaults);
    assert.deepEqual(r.problems, []);
    assert.equal(r.ignored.length, 1);
  });
});

describe("check-metrics-contract (rules and dashboards query only exported metrics)", () => {
  const contract = (args) => node("check-metrics-contract.mjs", args);
  it("passes the unmodified rules and dashboard", () => {
    const dir = copy("deploy/prometheus", "contract-ok");
    const r = contract(["--rules", join(dir, "rules"), "--dashboards", join(dir, "dashboards")]);
    assert.equal(r.code, 0, r.out);
  });
  it("fails a dashboard panel querying a metric no service defines", () => {
    const dir = copy("deploy/prometheus", "contract-dash");
    edit(
      join(dir, "dashboards/tokenmesh-overview.json"),
      "rate(tokenmesh_cost_usd_total",
      "rate(tokenmesh_cost_dollars_total",
    );
    expectFail(
      contract(["--rules", join(dir, "rules"), "--dashboards", join(dir, "dashboards")]),
      /tokenmesh_cost_dollars_total: no service defines it/,
    );
  });
  it("fails an alert querying a metric no service defines (promtool accepts it)", () => {
    const dir = copy("deploy/prometheus", "contract-rule");
    edit(
      join(dir, "rules/tokenmesh-alerts.yml"),
      "max by (model) (tokenmesh_router_breaker_state)",
      "max by (model) (tokenmesh_router_breaker_status)",
    );
    assert.equal(run("promtool", ["check", "rules", join(dir, "rules/tokenmesh-alerts.yml")]).code, 0);
    expectFail(
      contract(["--rules", join(dir, "rules"), "--dashboards", join(dir, "dashboards")]),
      /tokenmesh_router_breaker_status/,
    );
  });
  it("fails a dashboard query that does not parse", () => {
    const dir = copy("deploy/prometheus", "contract-syntax");
    edit(
      join(dir, "dashboards/tokenmesh-overview.json"),
      "max by (model) (tokenmesh_router_breaker_state)",
      "max by (model) (tokenmesh_router_breaker_state",
    );
    expectFail(contract(["--rules", join(dir, "rules"), "--dashboards", join(dir, "dashboards")]), /does not parse/);
  });
  it("fails a metric the running services did not export", () => {
    const dir = join(tmp, "contract-live");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "router.prom"), "# HELP up x\n# TYPE tokenmesh_router_attempts_total counter\n");
    expectFail(contract(["--scrape-dir", dir]), /no running service exported it/);
  });
});
