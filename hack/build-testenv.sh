#!/usr/bin/env bash
# Build the local control plane's binaries from pinned Go module versions.
# Binaries are cached outside the checkout, keyed by version, so a fresh clone
# (CI) reuses them:  $HEMOSTAT_CACHE/bin/<component>-<version>/
# Usage: hack/build-testenv.sh [etcd|k8s|apiserver-oldest|kwok|helm|flux|rollouts ...]
#   (default: the control plane, etcd k8s kwok helm; flux and rollouts, the controllers some
#   e2e tests run beside Hemostat, and apiserver-oldest, the oldest Kubernetes the chart claims,
#   only when named)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$HERE/versions.env"
CACHE=${HEMOSTAT_CACHE:-$HOME/.cache/hemostat}
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
log() { printf '[build %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# Run the build function $2 (with any further arguments) into $CACHE/bin/$1 unless a complete build is there.
cached() {
  local dir=$CACHE/bin/$1 fn=$2
  if [ -f "$dir/.complete" ]; then log "$1: cached in $dir"; return 0; fi
  log "$1: building (cold builds take minutes; output in $CACHE/build/$1.log)"
  rm -rf "$dir" "$dir.tmp"; mkdir -p "$dir.tmp" "$CACHE/build"
  local start=$SECONDS
  if ! ( "$fn" "$dir.tmp" "${@:3}" ) >"$CACHE/build/$1.log" 2>&1; then
    log "$1: FAILED; last lines of $CACHE/build/$1.log:"; tail -n 30 "$CACHE/build/$1.log" >&2; return 1
  fi
  touch "$dir.tmp/.complete"; mv "$dir.tmp" "$dir"
  log "$1: built in $((SECONDS - start))s"
}

# Staging modules are required at v0.0.0 by k8s.io/kubernetes; replace each with
# its published tag (derived from the published go.mod, never hard-coded).
#   build_k8s OUT [VERSION [COMMAND...]]   (default: $K8S_VERSION, the four the testenv runs)
build_k8s() {
  local out=$1 version=${2:-$K8S_VERSION} commands=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
  [ $# -gt 2 ] && commands=("${@:3}")
  local work=$CACHE/build/k8s-$version minor staging gomod mods ld
  minor=$(echo "$version" | cut -d. -f2); staging="v0.${version#v1.}"
  mkdir -p "$work"; cd "$work"; rm -f go.mod go.sum
  go mod init local.invalid/k8s-build
  gomod=$(cd "$(mktemp -d)" && GOFLAGS='' go mod download -json "k8s.io/kubernetes@$version" \
          | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  go mod edit -go="$(sed -n 's/^go \(.*\)$/\1/p' "$gomod")"
  mods=$(sed -n 's/^[[:space:]]*\(k8s\.io\/[A-Za-z0-9._-]*\) v0\.0\.0$/\1/p' "$gomod" | sort -u)
  for m in $mods; do go mod edit -replace="$m=$m@$staging"; done
  go mod edit -require="k8s.io/kubernetes@$version"
  { printf '//go:build tools\n\npackage tools\n\nimport (\n'
    printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "${commands[@]}"; printf ')\n'; } > tools.go
  go mod tidy
  ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$version -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  for c in "${commands[@]}"; do
    echo "building $c"
    go build -trimpath -tags selinux,notest -ldflags "all=$ld" -o "$out/$c" "k8s.io/kubernetes/cmd/$c"
  done
  "$out/kube-apiserver" --version
}

# etcd's server module has replace directives, so `go install` refuses it; a
# three-line main calling etcdmain.Main builds the same binary.
build_etcd() {
  local out=$1 work=$CACHE/build/etcd-$ETCD_VERSION
  mkdir -p "$work"; cd "$work"; rm -f go.mod go.sum
  go mod init local.invalid/etcd-build
  printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' > main.go
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  go mod tidy
  go build -trimpath -ldflags "-s -w" -o "$out/etcd" .
  "$out/etcd" --version
}

# kwok plus the stage definitions shipped in its module (standalone kwok needs them).
build_kwok() {
  local out=$1 dir
  GOFLAGS='' GOBIN=$out go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  dir=$(cd "$(mktemp -d)" && GOFLAGS='' go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    echo '---'; cat "$dir/kustomize/stage/$f"
  done > "$out/kwok-stages.yaml"
}

build_helm() {
  GOFLAGS='' GOBIN=$1 go install -ldflags "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

# A writable copy of a module ($1, path@version) out of the module cache, in $2.
module_copy() {
  local src
  src=$(cd "$(mktemp -d)" && GOFLAGS='' go mod download -json "$1" \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
  [ -n "$src" ] || { echo "go mod download $1: no module directory" >&2; return 1; }
  { [ ! -e "$2" ] || chmod -R u+w "$2"; } && rm -rf "$2" && mkdir -p "$(dirname "$2")" && cp -R "$src" "$2" && chmod -R u+w "$2"
}

# The build functions run under `if`, where `set -e` does not apply: each step is checked.
# $1 --help must mention the flag $2 (a binary that runs, and the flags the tests use).
has_flag() { grep -q -- "$2" <<<"$("$1" --help 2>&1)" || { echo "$1 --help: no $2" >&2; return 1; }; }

# Flux's source-controller and kustomize-controller, and their CRDs (crds/). A module's zip
# leaves its nested api module out, so the `replace <module>/api => ./api` is swapped for the
# published api module of the same version.
build_flux() {
  local out=$1 work=$CACHE/build/flux name version
  export GOTOOLCHAIN=$GITOPS_GOTOOLCHAIN
  mkdir -p "$out/crds" || return 1
  for name in source-controller kustomize-controller; do
    version=$FLUX_SOURCE_VERSION; [ "$name" = kustomize-controller ] && version=$FLUX_KUSTOMIZE_VERSION
    echo "building $name $version"
    module_copy "github.com/fluxcd/$name@$version" "$work/$name-$version" || return 1
    ( cd "$work/$name-$version" &&
      go mod edit -dropreplace "github.com/fluxcd/$name/api" -require "github.com/fluxcd/$name/api@$version" &&
      go build -trimpath -ldflags "-s -w" -o "$out/$name" . ) || return 1
    cp "$work/$name-$version"/config/crd/bases/*.yaml "$out/crds/" || return 1
  done
  has_flag "$out/source-controller" --storage-adv-addr && has_flag "$out/kustomize-controller" --requeue-dependency
}

# Argo Rollouts' controller and its CRDs (crds/; the kustomization.yaml beside them is left out).
build_rollouts() {
  local out=$1 work=$CACHE/build/argo-rollouts-$ROLLOUTS_VERSION
  export GOTOOLCHAIN=$GITOPS_GOTOOLCHAIN
  module_copy "github.com/argoproj/argo-rollouts@$ROLLOUTS_VERSION" "$work" || return 1
  local ld="-s -w -X github.com/argoproj/argo-rollouts/utils/version.version=${ROLLOUTS_VERSION#v}"
  ( cd "$work" && go build -trimpath -ldflags "$ld" -o "$out/rollouts-controller" ./cmd/rollouts-controller ) ||
    return 1
  mkdir -p "$out/crds" && cp "$work"/manifests/crds/*-crd.yaml "$out/crds/" || return 1
  "$out/rollouts-controller" --version && has_flag "$out/rollouts-controller" --kubeconfig
}

build_one() {
  case $1 in
    etcd) cached "etcd-$ETCD_VERSION" build_etcd ;;
    k8s) cached "k8s-$K8S_VERSION" build_k8s ;;
    apiserver-oldest) cached "kube-apiserver-$K8S_OLDEST_VERSION" build_k8s "$K8S_OLDEST_VERSION" kube-apiserver ;;
    kwok) cached "kwok-$KWOK_VERSION" build_kwok ;;
    helm) cached "helm-$HELM_VERSION" build_helm ;;
    flux) cached "flux-source-$FLUX_SOURCE_VERSION-kustomize-$FLUX_KUSTOMIZE_VERSION" build_flux ;;
    rollouts) cached "argo-rollouts-$ROLLOUTS_VERSION" build_rollouts ;;
    *) echo "unknown component: $1 (etcd, k8s, apiserver-oldest, kwok, helm, flux, rollouts)" >&2; return 2 ;;
  esac
}

# Components build in parallel (k8s is the long pole); a heartbeat shows progress.
pids=()
for c in ${*:-k8s etcd kwok helm}; do build_one "$c" & pids+=($!); done
# Its sleep is killed with it: a sleep left behind keeps the caller's stderr open for up to a
# minute, and a caller capturing the output (the e2e fixtures) waits for that.
( s=; trap 'kill $s 2>/dev/null; exit 0' TERM
  while :; do sleep 60 & s=$!; wait $s; log "still building... (tail -f $CACHE/build/*.log to watch)"; done ) & beat=$!
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=1; done
kill "$beat" 2>/dev/null || true
exit $failed
