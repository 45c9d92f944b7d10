#!/usr/bin/env bash
# Local, Docker-free control plane on 127.0.0.1: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kwok (fake kubelet) and Prometheus.
#   hack/testenv.sh up      build (cached) + start + wait until really ready; idempotent
#   hack/testenv.sh down    stop only what `up` started (recorded PIDs) and remove state
#   hack/testenv.sh status  show each component
# Writes $TESTENV/env: shell export lines (KUBECONFIG, PROMETHEUS_URL, PATH, ...).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(dirname "$HERE")
# shellcheck source=versions.env
source "$HERE/versions.env"
CACHE=${HEMOSTAT_CACHE:-$HOME/.cache/hemostat}
D=${TESTENV:-$ROOT/.testenv}
BIN_K8S=$CACHE/bin/k8s-$K8S_VERSION; BIN_ETCD=$CACHE/bin/etcd-$ETCD_VERSION
BIN_KWOK=$CACHE/bin/kwok-$KWOK_VERSION; BIN_HELM=$CACHE/bin/helm-$HELM_VERSION
PROMETHEUS=${PROMETHEUS_BIN:-/usr/bin/prometheus}
ETCD_PORT=23790; ETCD_PEER_PORT=23800; ETCD_METRICS_PORT=23792
API_PORT=16443; KCM_PORT=10357; SCHED_PORT=10359; PROM_PORT=19090
SVC_CIDR=10.96.0.0/16; SVC_FIRST_IP=10.96.0.1; POD_CIDR=10.244.0.0/16
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok prometheus)

LOG_TAG=testenv OWNER="hack/testenv.sh down"
# shellcheck source=daemons.sh
source "$HERE/daemons.sh"
kubectl_() { "$BIN_K8S/kubectl" --kubeconfig="$D/kubeconfig" "$@"; }
api_ready() {
  curl -sf --max-time 2 --cacert "$D/pki/ca.crt" --cert "$D/pki/admin.crt" --key "$D/pki/admin.key" \
    "https://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1
}

gen_pki() {
  local p=$D/pki days=3650
  mkdir -p "$p"
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days $days -keyout "$p/ca.key" -out "$p/ca.crt" \
    -subj "/CN=hemostat-testenv-ca" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
  sign() { # name subject extension...
    local n=$1 subj=$2; shift 2
    openssl req -new -newkey rsa:2048 -nodes -keyout "$p/$n.key" -out "$p/$n.csr" -subj "$subj" 2>/dev/null
    printf '%s\n' "$@" >"$p/$n.ext"
    openssl x509 -req -in "$p/$n.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial -sha256 \
      -days $days -out "$p/$n.crt" -extfile "$p/$n.ext" 2>/dev/null
    rm -f "$p/$n.csr" "$p/$n.ext"
  }
  local bc="basicConstraints=critical,CA:FALSE" ku="keyUsage=critical,digitalSignature,keyEncipherment"
  sign apiserver "/CN=kube-apiserver" "$bc" "$ku" "extendedKeyUsage=serverAuth" \
    "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:$SVC_FIRST_IP,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  # O=system:masters is the RBAC group that bypasses authorization (admin only).
  sign admin "/O=system:masters/CN=testenv-admin" "$bc" "$ku" "extendedKeyUsage=clientAuth"
  openssl genrsa -out "$p/sa.key" 2048 2>/dev/null
  openssl rsa -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null
  chmod 600 "$p"/*.key
}

write_kubeconfig() {
  cat >"$D/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: hemostat-testenv
  cluster: {server: "https://127.0.0.1:$API_PORT", certificate-authority: "$D/pki/ca.crt"}
users:
- name: admin
  user: {client-certificate: "$D/pki/admin.crt", client-key: "$D/pki/admin.key"}
contexts:
- name: hemostat-testenv
  context: {cluster: hemostat-testenv, user: admin}
current-context: hemostat-testenv
KC
}

write_prometheus_config() {
  # Scrape targets are files in prometheus/targets/ (file_sd), so the simulator and
  # the operator register themselves without a Prometheus restart.
  # Alert rules are files in prometheus/rules/ (loaded on POST /-/reload) and Alertmanagers are
  # files in prometheus/alertmanagers/ (file_sd), so a test brings its own of both.
  mkdir -p "$D/prometheus/targets" "$D/prometheus/data" "$D/prometheus/rules" "$D/prometheus/alertmanagers"
  cat >"$D/prometheus/prometheus.yml" <<YAML
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: ["$D/prometheus/rules/*.yml"]
alerting:
  alertmanagers:
  - file_sd_configs: [{files: ["$D/prometheus/alertmanagers/*.json"], refresh_interval: 1s}]
scrape_configs:
- job_name: prometheus
  static_configs: [{targets: ["127.0.0.1:$PROM_PORT"]}]
- job_name: testenv
  file_sd_configs: [{files: ["$D/prometheus/targets/*.json"], refresh_interval: 1s}]
YAML
}

write_env() {
  cat >"$D/env" <<ENV
export KUBECONFIG=$D/kubeconfig
export PROMETHEUS_URL=http://127.0.0.1:$PROM_PORT
export HEMOSTAT_TESTENV=$D
export HEMOSTAT_PROMETHEUS_TARGETS=$D/prometheus/targets
export HEMOSTAT_PROMETHEUS_RULES=$D/prometheus/rules
export HEMOSTAT_PROMETHEUS_ALERTMANAGERS=$D/prometheus/alertmanagers
export PATH=$BIN_K8S:$BIN_HELM:\$PATH
ENV
}

start_all() {
  for pair in "$ETCD_PORT etcd" "$API_PORT kube-apiserver" "$KCM_PORT kube-controller-manager" \
              "$SCHED_PORT kube-scheduler" "$PROM_PORT prometheus"; do
    # shellcheck disable=SC2086
    port_free $pair
  done
  rm -rf "$D"; mkdir -p "$D/logs" "$D/pids"
  gen_pki; write_kubeconfig; write_prometheus_config

  run etcd "$BIN_ETCD/etcd" --name=testenv --data-dir="$D/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="testenv=http://127.0.0.1:$ETCD_PEER_PORT" \
    --listen-metrics-urls="http://127.0.0.1:$ETCD_METRICS_PORT" \
    --unsafe-no-fsync --quota-backend-bytes=2147483648 --auto-compaction-retention=1
  wait_for etcd 30 curl -sf --max-time 2 "http://127.0.0.1:$ETCD_PORT/health"

  run kube-apiserver "$BIN_K8S/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
    --cert-dir="$D/apiserver-certs" \
    --tls-cert-file="$D/pki/apiserver.crt" --tls-private-key-file="$D/pki/apiserver.key" \
    --client-ca-file="$D/pki/ca.crt" --authorization-mode=Node,RBAC \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$D/pki/sa.pub" --service-account-signing-key-file="$D/pki/sa.key" \
    --service-cluster-ip-range="$SVC_CIDR" --allow-privileged=true --profiling=false --v=1
  wait_for kube-apiserver 120 api_ready

  local common=(--kubeconfig="$D/kubeconfig" --authentication-kubeconfig="$D/kubeconfig"
    --authorization-kubeconfig="$D/kubeconfig" --bind-address=127.0.0.1 --leader-elect=false
    --authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics --profiling=false --v=1)
  run kube-controller-manager "$BIN_K8S/kube-controller-manager" "${common[@]}" --secure-port="$KCM_PORT" \
    --controllers='*' --service-account-private-key-file="$D/pki/sa.key" --root-ca-file="$D/pki/ca.crt" \
    --cluster-signing-cert-file="$D/pki/ca.crt" --cluster-signing-key-file="$D/pki/ca.key" \
    --service-cluster-ip-range="$SVC_CIDR" --use-service-account-credentials=false \
    --horizontal-pod-autoscaler-sync-period=5s --kube-api-qps=200 --kube-api-burst=400
  # client rate limits above the defaults: the scale benchmark creates 10,000 Deployments
  run kube-scheduler "$BIN_K8S/kube-scheduler" "${common[@]}" --secure-port="$SCHED_PORT" \
    --kube-api-qps=200 --kube-api-burst=400
  wait_for kube-controller-manager 60 curl -sfk --max-time 2 "https://127.0.0.1:$KCM_PORT/healthz"
  wait_for kube-scheduler 60 curl -sfk --max-time 2 "https://127.0.0.1:$SCHED_PORT/healthz"

  # kwok manages only Nodes annotated kwok.x-k8s.io/node=fake; stages come from its module, plus
  # one of ours: a Pod annotated sim.hemostat.dev/crash crash-loops (a revision that crashes at start).
  KWOK_WORKDIR="$D/kwok" run kwok "$BIN_KWOK/kwok" --kubeconfig="$D/kubeconfig" \
    --config="$BIN_KWOK/kwok-stages.yaml" --config="$HERE/kwok-crash-stage.yaml" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --cidr="$POD_CIDR" --node-ip=10.240.0.1 --node-lease-duration-seconds=40

  run prometheus "$PROMETHEUS" --config.file="$D/prometheus/prometheus.yml" \
    --storage.tsdb.path="$D/prometheus/data" --web.listen-address="127.0.0.1:$PROM_PORT" \
    --storage.tsdb.retention.time=1d --web.enable-lifecycle
  wait_for prometheus 30 curl -sf --max-time 2 "http://127.0.0.1:$PROM_PORT/-/ready"

  wait_for kube-controller-manager 60 kubectl_ -n default get serviceaccount default
  kubectl_ apply -f - >/dev/null <<'YAML'
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-0
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels: {kubernetes.io/hostname: kwok-node-0, kubernetes.io/os: linux, kubernetes.io/arch: amd64, type: kwok}
status:
  allocatable: {cpu: "1000", memory: 4Ti, pods: "20000"}
  capacity: {cpu: "1000", memory: 4Ti, pods: "20000"}
YAML
  wait_for kwok 60 kubectl_ wait --for=condition=Ready node/kwok-node-0 --timeout=1s
  write_env
}

up() {
  if [ -f "$D/env" ] && api_ready; then
    local c missing=()
    for c in "${COMPONENTS[@]}"; do alive "$c" || missing+=("$c"); done
    if [ ${#missing[@]} -eq 0 ]; then log "already up: source $D/env"; return 0; fi
    log "partially up (not running: ${missing[*]}); restarting"
    down
  elif [ -d "$D/pids" ]; then
    down
  fi
  command -v openssl >/dev/null || die "openssl is required"
  [ -x "$PROMETHEUS" ] || die "prometheus not found at $PROMETHEUS (make testenv-deps installs the Debian package)"
  "$HERE/build-testenv.sh"
  local start=$SECONDS
  start_all
  log "up in $((SECONDS - start))s: source $D/env"
}

down() {
  local c p extra=()
  # Processes started on top of the testenv (e.g. by make demo) record their PIDs here too.
  for p in "$D"/pids/*.pid; do
    [ -e "$p" ] || continue
    c=$(basename "$p" .pid)
    [[ " ${COMPONENTS[*]} " == *" $c "* ]] || extra+=("$c")
  done
  for c in "${extra[@]}" prometheus kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
    stop_pid "$c"
  done
  rm -rf "$D"
}

status() {
  local c
  for c in "${COMPONENTS[@]}"; do
    if alive "$c"; then echo "$c: running (pid $(pid_of "$c"), log $D/logs/$c.log)"; else echo "$c: not running"; fi
  done
  api_ready && echo "apiserver: ready" || echo "apiserver: not ready"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
