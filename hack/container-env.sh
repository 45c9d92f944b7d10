# Sourced: make podman usable on a machine without Docker. Installs the tools
# from Debian when missing (as root) and points podman at a config with runc
# (crun refuses hybrid cgroup hosts) and container limits within this host's
# hard limits (root here cannot raise them).
CACHE=${HEMOSTAT_CACHE:-$HOME/.cache/hemostat}
if ! command -v podman >/dev/null || ! command -v mmdebstrap >/dev/null || ! command -v runc >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "podman, runc and mmdebstrap are missing: sudo apt-get install podman buildah runc mmdebstrap uidmap slirp4netns conmon catatonit golang-github-containers-common" >&2
    exit 1
  fi
  printf '[image] installing podman from Debian packages\n' >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    podman buildah runc mmdebstrap uidmap slirp4netns conmon catatonit golang-github-containers-common >/dev/null
fi
mkdir -p "$CACHE/image"
export CONTAINERS_CONF=$CACHE/image/containers.conf
# the lower of the host's hard limit and a generous fixed value
cap() { local hard=$1 want=$2; if [ "$hard" = unlimited ] || [ "$hard" -gt "$want" ]; then echo "$want"; else echo "$hard"; fi; }
nofile=$(cap "$(ulimit -Hn)" 20000)
nproc=$(cap "$(ulimit -Hu)" 32768)
cat > "$CONTAINERS_CONF" <<CONF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
CONF
