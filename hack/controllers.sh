#!/usr/bin/env bash
# The controllers Hemostat works beside, as host processes on the local control plane, for the
# e2e tests that need them: flux (Flux's source-controller and kustomize-controller) and
# rollouts (Argo Rollouts' controller). Built from pinned Go modules (hack/build-testenv.sh,
# cached), with the CRDs of the same module versions.
#   hack/controllers.sh up flux|rollouts ...       build (cached) + CRDs + start + wait until healthy; idempotent
#   hack/controllers.sh down [flux|rollouts ...]   stop them (default: both)
#   hack/controllers.sh status [flux|rollouts ...] exit 1 unless all named are running
# The cluster: HEMOSTAT_E2E_KUBECONFIG if set (the e2e tests' explicit opt-in), else the local
# control plane's kubeconfig; never an ambient KUBECONFIG. Logs and PIDs go to the testenv's
# logs/ and pids/ ($TESTENV, else $HEMOSTAT_TESTENV from .testenv/env, else .testenv), so
# `hack/testenv.sh down` stops them too. Every port is on 127.0.0.1, except Argo Rollouts'
# metrics and healthz, which it binds on 0.0.0.0 (no flag changes that).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(dirname "$HERE")
# shellcheck source=versions.env
source "$HERE/versions.env"
CACHE=${HEMOSTAT_CACHE:-$HOME/.cache/hemostat}
D=${TESTENV:-${HEMOSTAT_TESTENV:-$ROOT/.testenv}}
KUBE=${HEMOSTAT_E2E_KUBECONFIG:-$D/kubeconfig}
KUBECTL=$CACHE/bin/k8s-$K8S_VERSION/kubectl; [ -x "$KUBECTL" ] || KUBECTL=kubectl
BIN_FLUX=$CACHE/bin/flux-source-$FLUX_SOURCE_VERSION-kustomize-$FLUX_KUSTOMIZE_VERSION
BIN_ROLLOUTS=$CACHE/bin/argo-rollouts-$ROLLOUTS_VERSION
FLUX_NS=flux-system; ROLLOUTS_NS=argo-rollouts
SC_STORAGE_PORT=19280; SC_METRICS_PORT=19281; SC_HEALTH_PORT=19282
KC_METRICS_PORT=19283; KC_HEALTH_PORT=19284
AR_METRICS_PORT=19285; AR_HEALTHZ_PORT=19286

LOG_TAG=controllers OWNER="hack/controllers.sh down"
# shellcheck source=daemons.sh
source "$HERE/daemons.sh"
kubectl_() { "$KUBECTL" --kubeconfig="$KUBE" "$@"; }
procs_of() { # component -> its processes (the names of their pid and log files)
  case $1 in
    flux) echo flux-source-controller flux-kustomize-controller ;;
    rollouts) echo argo-rollouts-controller ;;
    *) echo "unknown component: $1 (flux, rollouts)" >&2; return 2 ;;
  esac
}

# name url pattern: its health endpoint answers and its log says the workers run (the
# endpoints answer a moment before they do).
healthy() { curl -sf --max-time 2 "$2" >/dev/null && grep -q -- "$3" "$D/logs/$1.log"; }

crds() { # dir: apply every CRD in it and wait until each is served
  kubectl_ apply --server-side --force-conflicts -f "$1" >/dev/null
  kubectl_ wait --for=condition=Established --timeout=60s -f "$1" >/dev/null
}

namespace() { kubectl_ create namespace "$1" --dry-run=client -o yaml | kubectl_ apply -f - >/dev/null; }

up_flux() {
  port_free $SC_STORAGE_PORT flux-source-controller; port_free $SC_METRICS_PORT flux-source-controller
  port_free $SC_HEALTH_PORT flux-source-controller
  port_free $KC_METRICS_PORT flux-kustomize-controller; port_free $KC_HEALTH_PORT flux-kustomize-controller
  crds "$BIN_FLUX/crds"
  namespace $FLUX_NS
  rm -rf "$D/flux"; mkdir -p "$D/flux/storage"
  # Flux reads the kubeconfig from KUBECONFIG only, and its own namespace from RUNTIME_NAMESPACE.
  # Small worker pools and a short dependency requeue: tests use intervals of seconds.
  local common=(--watch-all-namespaces=true --concurrent=2 --requeue-dependency=5s --log-level=info)
  KUBECONFIG=$KUBE RUNTIME_NAMESPACE=$FLUX_NS run flux-source-controller "$BIN_FLUX/source-controller" "${common[@]}" \
    --storage-path="$D/flux/storage" --storage-addr="127.0.0.1:$SC_STORAGE_PORT" \
    --storage-adv-addr="127.0.0.1:$SC_STORAGE_PORT" \
    --metrics-addr="127.0.0.1:$SC_METRICS_PORT" --health-addr="127.0.0.1:$SC_HEALTH_PORT"
  KUBECONFIG=$KUBE RUNTIME_NAMESPACE=$FLUX_NS run flux-kustomize-controller "$BIN_FLUX/kustomize-controller" \
    "${common[@]}" --metrics-addr="127.0.0.1:$KC_METRICS_PORT" --health-addr="127.0.0.1:$KC_HEALTH_PORT"
  wait_for flux-source-controller 60 healthy flux-source-controller "http://127.0.0.1:$SC_HEALTH_PORT/readyz" \
    'Starting workers.*"controller":"gitrepository"'
  wait_for flux-kustomize-controller 60 healthy flux-kustomize-controller "http://127.0.0.1:$KC_HEALTH_PORT/readyz" \
    'Starting workers.*"controller":"kustomization"'
}

up_rollouts() {
  port_free $AR_METRICS_PORT argo-rollouts-controller; port_free $AR_HEALTHZ_PORT argo-rollouts-controller
  crds "$BIN_ROLLOUTS/crds"
  namespace $ROLLOUTS_NS
  # Cluster-wide, one instance: no leader election. POD_NAMESPACE is where it looks for its
  # ConfigMaps (none: the defaults).
  POD_NAMESPACE=$ROLLOUTS_NS run argo-rollouts-controller "$BIN_ROLLOUTS/rollouts-controller" \
    --kubeconfig="$KUBE" --leader-elect=false --loglevel=info \
    --metricsPort=$AR_METRICS_PORT --healthzPort=$AR_HEALTHZ_PORT
  wait_for argo-rollouts-controller 60 healthy argo-rollouts-controller "http://127.0.0.1:$AR_HEALTHZ_PORT/healthz" \
    'Started rollout workers'
}

stop() { # process name
  stop_pid "$1"
  rm -f "$D/pids/$1.pid"
}

components() { local c; for c in "$@"; do procs_of "$c" >/dev/null || exit 2; done; }
running() { local n; for n in $(procs_of "$1"); do alive "$n" || return 1; done; }

up() {
  [ $# -gt 0 ] || die "usage: $0 up flux|rollouts ..."
  local c n
  components "$@"
  [ -f "$KUBE" ] || die "no kubeconfig at $KUBE: start the local control plane (make testenv-up) or set HEMOSTAT_E2E_KUBECONFIG"
  "$HERE/build-testenv.sh" "$@"
  mkdir -p "$D/logs" "$D/pids"
  for c in "$@"; do
    if running "$c"; then log "$c: already running"; continue; fi
    for n in $(procs_of "$c"); do stop "$n"; done  # a partial start
    "up_$c"
    log "$c: up (logs in $D/logs)"
  done
}

down() {
  local c n
  [ $# -gt 0 ] || set -- flux rollouts
  components "$@"
  for c in "$@"; do
    for n in $(procs_of "$c"); do stop "$n"; done
    if [ "$c" = flux ]; then rm -rf "$D/flux"; fi  # source-controller's artifact storage
  done
}

status() {
  local c n ok=0
  [ $# -gt 0 ] || set -- flux rollouts
  components "$@"
  for c in "$@"; do
    for n in $(procs_of "$c"); do
      if alive "$n"; then echo "$n: running (pid $(pid_of "$n"), log $D/logs/$n.log)"; else echo "$n: not running"; ok=1; fi
    done
  done
  return $ok
}

cmd=${1:-}; shift || true
case $cmd in
  up) up "$@" ;;
  down) down "$@" ;;
  status) status "$@" ;;
  *) echo "usage: $0 up|down|status [flux|rollouts ...]" >&2; exit 2 ;;
esac
