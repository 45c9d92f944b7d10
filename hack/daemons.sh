# Process helpers shared by hack/testenv.sh and hack/controllers.sh (sourced, not run).
# The caller sets D (state dir with logs/ and pids/), LOG_TAG and OWNER (the command that stops
# what it started, named when a port is taken).

log() { printf '[%s %s] %s\n' "$LOG_TAG" "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
pid_of() { cat "$D/pids/$1.pid" 2>/dev/null || true; }
alive() { local p; p=$(pid_of "$1"); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

closefds() { # close every inherited descriptor above stderr
  local fd
  for fd in /proc/$BASHPID/fd/*; do fd=${fd##*/}; if (( fd > 2 )); then eval "exec $fd>&-"; fi; done 2>/dev/null
}

run() { # name cmd...  (own process group, so a stop reaches its children too)
  # Without closefds a daemon inherits the caller's `flock /tmp/testenv.lock` descriptor and
  # holds the shared lock for as long as the control plane runs: every later user waits forever.
  local n=$1; shift
  ( closefds; exec setsid "$@" >"$D/logs/$n.log" 2>&1 < /dev/null ) &
  echo $! >"$D/pids/$n.pid"
}

wait_for() { # name timeout-seconds cmd...
  local n=$1 t=$2 start=$SECONDS; shift 2
  while ! "$@" >/dev/null 2>&1; do
    if ! alive "$n"; then
      die "$n exited during startup; log: $D/logs/$n.log
$(tail -n 20 "$D/logs/$n.log" 2>/dev/null)"
    fi
    if (( SECONDS - start > t )); then
      die "$n not ready after ${t}s; log: $D/logs/$n.log
$(tail -n 20 "$D/logs/$n.log" 2>/dev/null)"
    fi
    sleep 0.2
  done
  log "$n ready ($((SECONDS - start))s)"
}

port_free() { # port name
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    die "port 127.0.0.1:$1 (for $2) is already in use by a process not started here; stop it or run '$OWNER' in the checkout that owns it"
  fi
}

stop_pid() { # name: TERM its process group, KILL after 5 s; says so when it was running
  local p; p=$(pid_of "$1")
  [ -n "$p" ] || return 0
  if kill -0 "$p" 2>/dev/null; then
    kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$p" 2>/dev/null || true
    log "stopped $1 (pid $p)"
  fi
}
