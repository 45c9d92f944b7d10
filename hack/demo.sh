#!/usr/bin/env bash
# make demo: watch Hemostat roll back a bad rollout on the local control plane.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd); cd "$ROOT"
PY=${PY:-$ROOT/.venv/bin/python}
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
info() { printf '    %s\n' "$*"; }
fail() { printf '\nDEMO FAILED: %s\n' "$*" >&2; exit 1; }

step "Starting the local control plane (first run builds it from Go modules: ~15 min, then cached)"
hack/testenv.sh up
# shellcheck disable=SC1091
source .testenv/env
D=$HEMOSTAT_TESTENV; mkdir -p "$D/demo"

start_bg() { # name cmd...  (pid recorded so `make testenv-down` stops it)
  local n=$1; shift
  if [ -f "$D/pids/$n.pid" ] && kill -0 "$(cat "$D/pids/$n.pid")" 2>/dev/null; then info "$n already running"; return; fi
  setsid "$@" >"$D/demo/$n.log" 2>&1 < /dev/null & echo $! >"$D/pids/$n.pid"
  info "$n started (log: $D/demo/$n.log)"
}

step "Installing the CRDs"
kubectl apply --server-side --force-conflicts -f crds/ >/dev/null
kubectl wait --for=condition=Established crd/mitigationpolicies.hemostat.dev crd/incidents.hemostat.dev --timeout=60s >/dev/null

step "Starting the traffic simulator and the operator"
start_bg demo-simulator "$PY" -m hemostat.sim --targets-file "$HEMOSTAT_PROMETHEUS_TARGETS/demo-sim.json"
start_bg demo-operator "$PY" -m hemostat run --health-port 0 --metrics-port 0 --standalone

step "Deploying checkout v1 (healthy) and its MitigationPolicy in namespace shop"
kubectl create namespace shop --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl delete incidents --all -n shop >/dev/null 2>&1 || true
kubectl apply -f manifests/examples/demo-app.yaml >/dev/null
kubectl rollout status deployment/checkout -n shop --timeout=60s
kubectl apply -f manifests/examples/demo-policy.yaml >/dev/null
info "waiting for Prometheus to see traffic and the policy to judge it healthy..."
kubectl wait mp/checkout -n shop --timeout=90s \
  --for=jsonpath='{.status.targets[0].verdicts.error-rate}'=Healthy >/dev/null || fail "no healthy verdict; see $D/demo/demo-operator.log"
kubectl get mp -n shop

step "Rolling out checkout v2: 35% of its requests fail"
kubectl patch deployment checkout -n shop --type=strategic -p \
  '{"spec":{"template":{"metadata":{"annotations":{"sim.hemostat.dev/error-rate":"0.35"}},"spec":{"containers":[{"name":"app","image":"registry.local/checkout:v2"}]}}}}' >/dev/null
kubectl rollout status deployment/checkout -n shop --timeout=60s

step "Watching: Hemostat detects the breach, rolls back, and verifies recovery"
last=""; deadline=$((SECONDS + 240))
while (( SECONDS < deadline )); do
  phase=$(kubectl get incidents -n shop -o jsonpath='{.items[0].status.phase}' 2>/dev/null || true)
  ratio=$(curl -s "$PROMETHEUS_URL/api/v1/query" --data-urlencode \
    'query=sum(rate(http_requests_total{namespace="shop",code=~"5.."}[10s])) / sum(rate(http_requests_total{namespace="shop"}[10s]))' \
    | "$PY" -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print("%.3f" % float(r[0]["value"][1]) if r else "n/a")')
  if [ "$phase" != "$last" ] || (( SECONDS % 5 == 0 )); then
    info "$(date -u +%H:%M:%SZ)  incident phase: ${phase:-none yet}   error ratio: $ratio"; last=$phase
  fi
  [ "$phase" = Resolved ] && break
  [ "$phase" = Escalated ] && fail "the incident escalated; see kubectl describe incident -n shop"
  sleep 1
done
[ "$last" = Resolved ] || fail "no resolution within 4 minutes; see $D/demo/demo-operator.log"

step "kubectl get incidents -n shop"
kubectl get incidents -n shop
step "The incident's timeline (status.timeline, also posted as Events)"
kubectl get incidents -n shop -o jsonpath='{range .items[0].status.timeline[*]}{.at}  {.reason}  {.message}{"\n"}{end}'
step "The Deployment's revisions"
kubectl rollout history deployment/checkout -n shop | sed '/^$/d'
kubectl get deployment checkout -n shop -o jsonpath='    now running: {.spec.template.spec.containers[0].image}{"\n"}'

step "The postmortem draft, with a chart of each signal from Prometheus"
incident=$(kubectl get incidents -n shop -o jsonpath='{.items[0].metadata.name}')
"$PY" -m hemostat postmortem "$incident" -n shop -f "$D/demo/postmortem.md" --prometheus-url "$PROMETHEUS_URL" \
  || fail "no postmortem; see the line above"
ls "$D"/demo/postmortem*.png "$D"/demo/postmortem*.svg 2>/dev/null | sed 's/^/    /'

cat <<EXPLORE

The cluster, Prometheus ($PROMETHEUS_URL), the simulator and the operator are still running.
  source .testenv/env
  kubectl describe incident -n shop            # conditions + Events
  kubectl get mp -n shop -o wide
  tail -f .testenv/demo/demo-operator.log
Tear everything down with:  make testenv-down
EXPLORE
