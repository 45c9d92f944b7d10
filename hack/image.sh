#!/usr/bin/env bash
# Build the operator image with what this machine has: docker if its daemon
# answers, else podman. Where no container registry is reachable, the base is
# built from Debian packages (same Python line as the registry base) and cached.
# Usage: hack/image.sh            env: IMAGE (default localhost/hemostat:dev)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${HEMOSTAT_CACHE:-$HOME/.cache/hemostat}
IMAGE=${IMAGE:-localhost/hemostat:dev}
LOCAL_BASE=localhost/hemostat-base:python3.11-bookworm
log() { printf '[image %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
start=$SECONDS

if docker info >/dev/null 2>&1; then
  docker build -t "$IMAGE" "$ROOT"
  log "built $IMAGE with docker in $((SECONDS - start))s: $(docker image inspect -f '{{.Size}}' "$IMAGE" | numfmt --to=si)B"
  exit 0
fi

# shellcheck source=container-env.sh
source "$ROOT/hack/container-env.sh"

build_args=()
if ! curl -s -m 5 -o /dev/null https://registry-1.docker.io/v2/; then
  if ! podman image exists "$LOCAL_BASE"; then
    tar=$CACHE/image/base-bookworm-python3-v3.tar
    if [ ! -s "$tar" ]; then
      log "no registry reachable: building a Python base from Debian packages (about a minute)"
      mkdir -p "$CACHE/image"
      # merged /usr without the usrmerge package (which pulls in 47 MB of perl);
      # the standard library's bytecode goes: the image carries its own (Dockerfile);
      # so do glibc's iconv converters (gconv), which Python's own codecs never use
      mmdebstrap --quiet --variant=minbase --format=tar --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --include=python3,python3-venv,ca-certificates \
        --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/lintian/*' \
        --dpkgopt='path-exclude=/usr/lib/x86_64-linux-gnu/gconv/*' \
        --skip=output/dev \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
        --customize-hook='find "$1"/usr/lib/python3* -name __pycache__ -prune -exec rm -rf {} +' \
        bookworm "$tar.tmp" /etc/apt/sources.list.d/debian.sources
      mv "$tar.tmp" "$tar"
    fi
    podman import -q --change 'ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV=LANG=C.UTF-8' --change 'CMD=["python3"]' "$tar" "$LOCAL_BASE" >/dev/null
  fi
  build_args+=(--pull=never --build-arg "BASE=$LOCAL_BASE")
fi

# A TLS-intercepting proxy's CA, when the machine has one, is mounted for the
# build only: it never enters the image.
extra_ca=(/usr/local/share/ca-certificates/*.crt)
if [ -e "${extra_ca[0]}" ]; then
  bundle=$CACHE/image/build-ca.crt
  mkdir -p "$CACHE/image"
  cat /etc/ssl/certs/ca-certificates.crt "${extra_ca[@]}" > "$bundle"
  build_args+=(-v "$bundle:/etc/ssl/certs/ca-certificates.crt:ro" --build-arg PIP_CERT=/etc/ssl/certs/ca-certificates.crt)
fi

podman build --layers "${build_args[@]}" -t "$IMAGE" "$ROOT" >&2
podman image prune -f >/dev/null
size=$(podman image inspect -f '{{.Size}}' "$IMAGE")
log "built $IMAGE with podman in $((SECONDS - start))s: $(numfmt --to=si "$size")B"
