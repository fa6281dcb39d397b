#!/usr/bin/env bash
# Validates everything under deploy/ without a Docker engine or a cluster, and fails on the first broken check.
#   bash deploy/scripts/validate.sh            all checks (the live one needs `npm run build` first)
#   bash deploy/scripts/validate.sh --static   skip the check that starts the services
# Installs what is missing: docker-compose and promtool (Debian's prometheus package) with apt-get, the offline
# checkers' npm packages into deploy/tools (npm ci; not a workspace). kubectl (for `kubectl kustomize`) must be on
# the machine (it is in the CI image); `kustomize` on PATH works too.
set -euo pipefail
cd "$(dirname "$0")/../.."
live=1
[ "${1:-}" = "--static" ] && live=0

step() { printf '\n== %s\n' "$*"; }
timed() {
  local start=$SECONDS
  "$@"
  echo "   ($((SECONDS - start)) s)"
}

step "tools"
missing=()
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} from Debian"
  apt-get update -qq
  # --no-install-recommends: promtool only, no Prometheus server started.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v kubectl >/dev/null 2>&1 && ! command -v kustomize >/dev/null 2>&1; then
  echo "kubectl (or kustomize) is required for the kustomize builds" >&2
  exit 1
fi
if [ ! -d deploy/tools/node_modules/kubernetes-models ] || [ deploy/tools/package-lock.json -nt deploy/tools/node_modules ]; then
  npm ci --prefix deploy/tools --no-audit --no-fund --loglevel=error
fi
echo "docker-compose $(docker-compose version --short), $(promtool --version 2>&1 | head -1), kubectl $(kubectl version --client 2>/dev/null | awk '/Kustomize/{print "(kustomize " $3 ")"}')"

step "the Kubernetes catalog ConfigMap source is config/mesh.yaml"
if ! cmp -s config/mesh.yaml deploy/k8s/base/mesh.yaml; then
  echo "FAIL deploy/k8s/base/mesh.yaml differs from config/mesh.yaml: cp config/mesh.yaml deploy/k8s/base/mesh.yaml" >&2
  exit 1
fi
echo "ok   identical"

step "Dockerfile"
timed node deploy/scripts/check-dockerfile.mjs

step "compose: docker-compose config -q (base, base + GPU) and stack invariants"
timed node deploy/scripts/check-compose.mjs

step "kustomize overlays: build, Kubernetes schemas, deployment rules"
timed node deploy/scripts/check-k8s.mjs --external-secret tokenmesh-secrets \
  deploy/k8s/overlays/dev deploy/k8s/overlays/prod deploy/k8s/overlays/prod-gpu
# The custom-metrics adapter must expose the metric the inference HPA scales on.
grep -q 'tokenmesh_inference_queue_depth' deploy/k8s/prometheus-adapter/values.yaml
# Helm values and the Kubernetes scrape config are not manifests: they must at least parse.
node -e 'const Y=require("./deploy/tools/node_modules/yaml");for(const f of process.argv.slice(1))Y.parse(require("fs").readFileSync(f,"utf8"))' \
  deploy/k8s/prometheus-adapter/values.yaml deploy/prometheus/prometheus-kubernetes.yml

step "Prometheus: promtool check config / check rules / test rules"
timed promtool check config --syntax-only deploy/compose/prometheus/prometheus.yml
timed promtool check rules deploy/prometheus/rules/*.yml
timed promtool test rules deploy/prometheus/tests/*.test.yml

step "metrics contract: every metric the rules and dashboards query is defined by the services"
timed node deploy/scripts/check-metrics-contract.mjs

step "checkers reject broken inputs"
timed node --test --test-reporter=spec test/deploy/checkers.test.mjs

if [ "$live" = 1 ]; then
  step "live: start the services, promtool check metrics on each /metrics, contract against what they export"
  scrape=$(mktemp -d)
  trap 'rm -rf "$scrape"' EXIT
  timed node test/deploy/scrape-services.mjs "$scrape"
  timed node deploy/scripts/check-metrics-contract.mjs --scrape-dir "$scrape"
fi

printf '\ndeploy: all checks passed\n'
