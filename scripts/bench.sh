#!/usr/bin/env bash
# scripts/bench.sh — containerd and Tether side by side, in a network namespace of their own.
#
#   scripts/bench.sh [options] [-- extra `python -m bench` arguments]
#
#   1. creates netns $BENCH_NETNS (lo up); everything below runs only there
#   2. starts docker-registry on 127.0.0.1:5000 in it (temp storage) and pushes the offline
#      test images (tests/images/build.sh: busybox-static + umoci): busybox, layers, and
#      "big" (busybox + 4 layers of 8 MiB random data, for the pull workload; built here)
#      and $BENCH_FILL_IMAGES (200) distinct one-layer images tether-bench/fill-NNN (python -m
#      bench.imagefill), pulled by the image workload before it times ListImages/ImageStatus
#   3. starts containerd 1.6 with CRI via scripts/containerd-bench.sh (pause image built
#      offline from catatonit -P and pushed to that registry)
#   4. starts Tether (.venv/bin/tether serve, own root/run dirs, same CNI config dir)
#   5. runs `python -m bench --compare <containerd> <tether>` (ratios tether/containerd)
#   6. tears everything down (pods removed through the CRI, daemons stopped, mounts gone,
#      registry stopped, netns deleted), also on failure or Ctrl-C
#
# Options:
#   --no-tether        benchmark containerd alone (--endpoint)
#   --no-containerd    benchmark Tether alone
#   --handler NAME     runtime handler for both (crun: runs containerd-bench.sh cgroups-fix)
#   --out DIR          where bench.json / bench.txt go (default ./bench-results)
#   --keep             leave everything running at the end (then: scripts/bench.sh --down)
#   --down             only tear down what an earlier --keep left
# Example:
#   scripts/bench.sh -- -w lifecycle,density,floor -n 20 -m 30
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export BENCH_NETNS=${BENCH_NETNS:-tether-bench}
export BENCH_DIR=${BENCH_DIR:-/run/tether-bench}
export BENCH_ROOT=${BENCH_ROOT:-/var/lib/tether-bench}
export BENCH_REGISTRY=127.0.0.1:5000
export BENCH_PY=${BENCH_PY:-$REPO/.venv/bin/python}
NETNS_PATH=/run/netns/$BENCH_NETNS
CTD="$REPO/scripts/containerd-bench.sh"
TETHER_BIN=${TETHER_BIN:-$REPO/.venv/bin/tether}
TDIR=$BENCH_DIR/tether
TROOT=$BENCH_ROOT/tether
REGDIR_FILE=$BENCH_DIR/registry.dir
REG_PIDF=$BENCH_DIR/registry.pid
T_PIDF=$TDIR/pid

log() { printf '[bench] %s\n' "$*"; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root"
in_ns() { nsenter --net="$NETNS_PATH" -- "$@"; }

with_tether=1 with_ctd=1 handler="" out=$PWD/bench-results keep=0 only_down=0
while [ $# -gt 0 ]; do
  case "$1" in
    --no-tether) with_tether=0 ;;
    --no-containerd) with_ctd=0 ;;
    --handler) handler=$2; shift ;;
    --out) out=$2; shift ;;
    --keep) keep=1 ;;
    --down) only_down=1 ;;
    --) shift; break ;;
    *) die "unknown option $1 (see the header of $0)" ;;
  esac
  shift
done
EXTRA=("$@")

pid_is() { # pidfile pattern: alive and its command line contains pattern
  [ -s "$1" ] || return 1
  local pid; pid=$(cat "$1")
  kill -0 "$pid" 2>/dev/null && tr '\0' ' ' 2>/dev/null < "/proc/$pid/cmdline" | grep -qF -- "$2"
}

stop_pidfile() { # pidfile pattern
  if pid_is "$1" "$2"; then
    local pid i; pid=$(cat "$1")
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 200; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$1"
}

# ---------------------------------------------------------------- registry
start_registry() {
  local d; d=$(mktemp -d /tmp/tether-bench-registry.XXXXXX)
  echo "$d" > "$REGDIR_FILE"
  cat > "$d/config.yml" <<EOF
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $d/storage}
  delete: {enabled: true}
http: {addr: $BENCH_REGISTRY}
EOF
  setsid nsenter --net="$NETNS_PATH" -- /usr/bin/docker-registry serve "$d/config.yml" \
    >>"$d/registry.log" 2>&1 < /dev/null &
  echo $! > "$REG_PIDF"
  for _ in $(seq 1 100); do
    in_ns curl -fsS -m 1 "http://$BENCH_REGISTRY/v2/" >/dev/null 2>&1 && { log "registry up in $BENCH_NETNS"; return 0; }
    sleep 0.1
  done
  tail "$d/registry.log" >&2; die "registry did not start"
}

# A multi-layer image big enough for the pull speed to matter: busybox + BENCH_BIG_LAYERS
# layers of BENCH_BIG_MB MiB of random (incompressible) data each; built offline with umoci.
build_big_image() {
  local layout=$BENCH_ROOT/images/big n=${BENCH_BIG_LAYERS:-4} mb=${BENCH_BIG_MB:-8} b i
  [ -f "$layout/index.json" ] && return 0
  b=$(mktemp -d "$BENCH_ROOT/.big.XXXXXX")
  umoci init --layout "$b/layout"
  umoci new --image "$b/layout:latest"
  umoci unpack --image "$b/layout:latest" "$b/bundle" >/dev/null
  mkdir -p "$b/bundle/rootfs/bin" "$b/bundle/rootfs/data"
  install -m 0755 /bin/busybox "$b/bundle/rootfs/bin/busybox"
  ln -s busybox "$b/bundle/rootfs/bin/sh"; ln -s busybox "$b/bundle/rootfs/bin/sleep"
  umoci repack --refresh-bundle --image "$b/layout:latest" "$b/bundle"
  for ((i = 1; i <= n; i++)); do
    head -c "$((mb * 1024 * 1024))" /dev/urandom > "$b/bundle/rootfs/data/layer$i.bin"
    umoci repack --refresh-bundle --image "$b/layout:latest" "$b/bundle"
  done
  umoci config --image "$b/layout:latest" --architecture amd64 --os linux \
    --config.cmd sh --config.env PATH=/bin
  mkdir -p "$(dirname "$layout")"; mv "$b/layout" "$layout"; rm -rf "$b"
  log "built $((n + 1))-layer image ($n x $mb MiB random data) at $layout"
}

push_images() {
  bash "$REPO/tests/images/build.sh" | sed 's/^/  /'
  local cache=${TETHER_TEST_IMAGES:-/var/cache/tether-test-images} n tmp
  tmp=$(mktemp -d)
  for n in busybox layers; do
    REGISTRY_AUTH_FILE=$tmp/auth.json in_ns skopeo copy --quiet --insecure-policy \
      --dest-tls-verify=false --dest-no-creds "oci:$cache/$n:latest" \
      "docker://$BENCH_REGISTRY/tether-bench/$n:latest"
    log "pushed $BENCH_REGISTRY/tether-bench/$n:latest"
  done
  build_big_image
  REGISTRY_AUTH_FILE=$tmp/auth.json in_ns skopeo copy --quiet --insecure-policy \
    --dest-tls-verify=false --dest-no-creds "oci:$BENCH_ROOT/images/big:latest" \
    "docker://$BENCH_REGISTRY/tether-bench/big:latest"
  log "pushed $BENCH_REGISTRY/tether-bench/big:latest"
  if [ "${BENCH_FILL_IMAGES:-200}" -gt 0 ]; then
    (cd "$REPO" && in_ns "$BENCH_PY" -m bench.imagefill --registry "$BENCH_REGISTRY" \
       --prefix tether-bench/fill- -n "${BENCH_FILL_IMAGES:-200}") | sed 's/^/  /'
  fi
  rm -rf "$tmp"
}

# ---------------------------------------------------------------- tether
start_tether() {
  mkdir -p "$TDIR" "$TROOT"
  cat > "$TDIR/tether.toml" <<EOF
# generated by scripts/bench.sh
[runtime.handlers.runc]
path = "$(command -v runc)"
root = "$TDIR/runc"

[runtime.handlers.crun]
path = "$(command -v crun || echo /usr/bin/crun)"
root = "$TDIR/crun"

[images]
insecure_registries = ["$BENCH_REGISTRY"]
pause_image = "$BENCH_REGISTRY/tether-bench/pause:3.10"
EOF
  setsid nsenter --net="$NETNS_PATH" -- "$TETHER_BIN" serve \
      --config "$TDIR/tether.toml" --config-dir "$TDIR/tether.d" \
      --root "$TROOT" --run-dir "$TDIR/run" --cni-conf-dir "$BENCH_DIR/net.d" \
      --metrics-port 19090 --log-format json --log-level info \
      >>"$TDIR/tether.log" 2>&1 < /dev/null &
  echo $! > "$T_PIDF"
  for _ in $(seq 1 200); do
    [ -S "$TDIR/run/tether.sock" ] && { log "tether up: unix://$TDIR/run/tether.sock"; return 0; }
    pid_is "$T_PIDF" serve || break
    sleep 0.1
  done
  tail -20 "$TDIR/tether.log" >&2; die "tether did not start (log $TDIR/tether.log)"
}

stop_tether() {
  if pid_is "$T_PIDF" serve; then
    log "removing bench pods from tether, stopping it"
    (cd "$REPO" && in_ns "$BENCH_PY" -m bench --endpoint "unix://$TDIR/run/tether.sock" \
       --cleanup-all --rpc-timeout 60 2>&1 | sed 's/^/  /') || true
    stop_pidfile "$T_PIDF" serve
  fi
  local m
  for m in $(findmnt -rn -o TARGET | grep -E "^($TROOT|$TDIR)(/|$)" | sort -r || true); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  rm -rf "$TDIR" "$TROOT"
}

# ---------------------------------------------------------------- teardown
teardown() {
  set +e
  log "tearing down"
  stop_tether
  [ -x "$CTD" ] && "$CTD" purge
  stop_pidfile "$REG_PIDF" docker-registry
  if [ -s "$REGDIR_FILE" ]; then rm -rf "$(cat "$REGDIR_FILE")"; rm -f "$REGDIR_FILE"; fi
  if [ -e "$NETNS_PATH" ]; then
    local left; left=$(ip netns pids "$BENCH_NETNS" 2>/dev/null | tr '\n' ' ')
    [ -n "${left// }" ] && log "WARNING: processes still in netns $BENCH_NETNS: $left"
    ip netns del "$BENCH_NETNS" && log "deleted netns $BENCH_NETNS"
  fi
  if findmnt -rn -o TARGET | grep -qE "^($BENCH_ROOT|$BENCH_DIR)(/|$)"; then
    log "WARNING: mounts remain under $BENCH_ROOT or $BENCH_DIR; not deleting them"
  else
    rm -rf "$BENCH_DIR" "$BENCH_ROOT"
  fi
}

if [ $only_down = 1 ]; then teardown; exit 0; fi

[ ! -e "$NETNS_PATH" ] || die "netns $BENCH_NETNS exists (an earlier run? scripts/bench.sh --down)"
ip netns add "$BENCH_NETNS"
[ $keep = 1 ] || trap teardown EXIT
trap 'exit 130' INT TERM
ip -n "$BENCH_NETNS" link set lo up
mkdir -p "$BENCH_DIR" "$BENCH_ROOT" "$out"
log "netns $BENCH_NETNS created"

start_registry
push_images
[ "$handler" = crun ] && "$CTD" cgroups-fix
if [ $with_ctd = 1 ]; then
  "$CTD" up    # also writes the shared CNI config into $BENCH_DIR/net.d
else
  "$CTD" config
fi
endpoints=()
[ $with_ctd = 1 ] && endpoints+=("$("$CTD" endpoint)")
if [ $with_tether = 1 ]; then start_tether; endpoints+=("unix://$TDIR/run/tether.sock"); fi
[ ${#endpoints[@]} -gt 0 ] || die "nothing to benchmark"
if [ ${#endpoints[@]} = 2 ]; then sel=(--compare "${endpoints[@]}"); else sel=(--endpoint "${endpoints[0]}"); fi

cmd=("$BENCH_PY" -m bench "${sel[@]}"
     --image "$BENCH_REGISTRY/tether-bench/busybox:latest"
     --pull-image "$BENCH_REGISTRY/tether-bench/big:latest"
     --cni-conf "$BENCH_DIR/net.d/10-tether-bench.conflist"
     --image-fill "${BENCH_FILL_IMAGES:-200}" --image-fill-prefix "$BENCH_REGISTRY/tether-bench/fill-"
     ${handler:+--handler "$handler"}
     --json "$out/bench.json" "${EXTRA[@]}")
log "running: ${cmd[*]}"
set +e
(cd "$REPO" && in_ns "${cmd[@]}") | tee "$out/bench.txt"
rc=${PIPESTATUS[0]}
set -e
log "results: $out/bench.json, $out/bench.txt (exit $rc)"
[ $keep = 1 ] && log "--keep: left running; scripts/bench.sh --down tears it down"
exit "$rc"
