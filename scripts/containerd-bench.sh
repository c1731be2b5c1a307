#!/usr/bin/env bash
# scripts/containerd-bench.sh — containerd 1.6 (Debian package) with its CRI plugin, run as
# the reference runtime for `python -m bench`, inside a network namespace of the bench's own.
#
# Usage: scripts/containerd-bench.sh up           write config, build+push the pause image,
#                                                 start containerd in $BENCH_NETNS (idempotent)
#        scripts/containerd-bench.sh down         remove every CRI pod (through the CRI, so
#                                                 CNI DEL runs and mounts go), stop containerd
#                                                 and leftover shims, unmount leftovers
#        scripts/containerd-bench.sh purge        down + delete its root/state/CNI dirs (and
#                                                 the netns if `up` created it)
#        scripts/containerd-bench.sh status
#        scripts/containerd-bench.sh endpoint     print the CRI endpoint
#        scripts/containerd-bench.sh cgroups-fix  mount hugetlb as a v1 hierarchy so that crun
#                                                 1.8 accepts this hybrid host (needed only for
#                                                 --handler crun)
#
# Settings (environment; scripts/bench.sh sets them):
#   BENCH_NETNS     network namespace (default tether-bench; created with lo up if absent)
#   BENCH_DIR       state/config dir (default /run/tether-bench)
#   BENCH_ROOT      persistent dir (default /var/lib/tether-bench): containerd root, images
#   BENCH_REGISTRY  registry reachable INSIDE the netns (default 127.0.0.1:5000); the pause
#                   image is pushed there as tether-bench/pause:3.10
#   BENCH_SUBNET    pod subnet of the CNI bridge (default 10.203.0.0/16; bridge tbench0)
#   BENCH_PY        python with the repo's packages (default <repo>/.venv/bin/python)
#
# Layout:  config  $BENCH_DIR/containerd/config.toml   hosts  $BENCH_DIR/containerd/certs.d
#          root    $BENCH_ROOT/containerd              state  $BENCH_DIR/containerd/state
#          socket  unix://$BENCH_DIR/containerd/containerd.sock
#          CNI     $BENCH_DIR/net.d/10-tether-bench.conflist (bridge + host-local + portmap +
#                  loopback; shared with the runtime under test), IPAM $BENCH_DIR/cni-ipam
#          log     $BENCH_DIR/containerd/containerd.log    pid $BENCH_DIR/containerd/pid
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NETNS=${BENCH_NETNS:-tether-bench}
NETNS_PATH=/run/netns/$NETNS
DIR=${BENCH_DIR:-/run/tether-bench}
ROOT=${BENCH_ROOT:-/var/lib/tether-bench}
REG=${BENCH_REGISTRY:-127.0.0.1:5000}
SUBNET=${BENCH_SUBNET:-10.203.0.0/16}
PY=${BENCH_PY:-$REPO/.venv/bin/python}
CNI_BIN=/usr/lib/cni

CDIR=$DIR/containerd
CONF=$CDIR/config.toml
CERTS=$CDIR/certs.d
CROOT=$ROOT/containerd
CSTATE=$CDIR/state
SOCK=$CDIR/containerd.sock
PIDF=$CDIR/pid
LOG=$CDIR/containerd.log
NETD=$DIR/net.d
CONFLIST=$NETD/10-tether-bench.conflist
IPAM=$DIR/cni-ipam
NETNS_MARK=$DIR/.netns-created-by-containerd-bench
PAUSE_LAYOUT=$ROOT/images/pause
PAUSE_REF=$REG/tether-bench/pause:3.10

log() { printf '[containerd-bench] %s\n' "$*"; }
die() { printf '[containerd-bench] ERROR: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root"

in_ns() { nsenter --net="$NETNS_PATH" -- "$@"; }
ctr_() { ctr --address "$SOCK" "$@"; }

# our containerd: the pid in the pid file, alive, running with our config
running() {
  [ -s "$PIDF" ] || return 1
  local pid; pid=$(cat "$PIDF")
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' 2>/dev/null < "/proc/$pid/cmdline" | grep -qF -- "$CONF"
}

# shims started by our containerd (they carry its socket address on their command line)
our_shims() {
  local p
  for p in /proc/[0-9]*; do
    tr '\0' ' ' 2>/dev/null < "$p/cmdline" | grep -qF -- "-address $SOCK " && echo "${p#/proc/}"
  done
  return 0
}

ensure_netns() {
  if [ ! -e "$NETNS_PATH" ]; then
    ip netns add "$NETNS"
    mkdir -p "$DIR"; touch "$NETNS_MARK"
    log "created netns $NETNS"
  fi
  ip -n "$NETNS" link set lo up
}

check_tools() {
  local b
  for b in containerd containerd-shim-runc-v2 ctr runc nsenter umoci skopeo curl; do
    command -v "$b" >/dev/null || die "$b missing (scripts/install-deps.sh)"
  done
  for b in bridge host-local portmap loopback; do
    [ -x "$CNI_BIN/$b" ] || die "CNI plugin $CNI_BIN/$b missing (containernetworking-plugins)"
  done
  [ -x /usr/bin/catatonit ] || die "catatonit missing"
}

# ---------------------------------------------------------------- pause image (offline)
# A pause image made from the static catatonit in pause mode (-P), no base image pulled.
build_pause() {
  [ -f "$PAUSE_LAYOUT/index.json" ] && return 0
  local tmp bundle epoch=1704067200 created
  created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
  tmp=$(mktemp -d "$ROOT/.pause.XXXXXX"); bundle=$tmp/bundle
  umoci init --layout "$tmp/layout"
  umoci new --image "$tmp/layout:3.10"
  umoci unpack --image "$tmp/layout:3.10" "$bundle" >/dev/null
  mkdir -p "$bundle/rootfs/"{dev,proc,sys,etc}
  install -m 0755 /usr/bin/catatonit "$bundle/rootfs/pause"
  printf 'root:x:0:0:root:/:/pause\npause:x:65535:65535:pause:/:/pause\n' > "$bundle/rootfs/etc/passwd"
  printf 'root:x:0:\npause:x:65535:\n' > "$bundle/rootfs/etc/group"
  find "$bundle/rootfs" -exec touch -h -d "@$epoch" {} +
  umoci repack --image "$tmp/layout:3.10" --history.created "$created" \
    --history.created_by "catatonit -P as /pause (tether bench)" "$bundle"
  umoci config --image "$tmp/layout:3.10" --created "$created" --architecture amd64 --os linux \
    --history.created "$created" --history.created_by "umoci config" \
    --config.entrypoint /pause --config.entrypoint -P --config.user 65535:65535 \
    --config.stopsignal SIGTERM --config.workingdir /
  mkdir -p "$(dirname "$PAUSE_LAYOUT")"
  rm -rf "$PAUSE_LAYOUT"; mv "$tmp/layout" "$PAUSE_LAYOUT"; rm -rf "$tmp"
  log "built pause image layout $PAUSE_LAYOUT"
}

push_pause() {
  in_ns curl -fsS -m 3 "http://$REG/v2/" >/dev/null \
    || die "registry $REG not reachable inside netns $NETNS (scripts/bench.sh starts one)"
  local tmp; tmp=$(mktemp -d)
  REGISTRY_AUTH_FILE=$tmp/auth.json in_ns skopeo copy --quiet --insecure-policy \
    --dest-tls-verify=false --dest-no-creds "oci:$PAUSE_LAYOUT:3.10" "docker://$PAUSE_REF"
  rm -rf "$tmp"
  log "pushed $PAUSE_REF"
}

# ---------------------------------------------------------------- config
hosts_toml() { # dir registry-name
  mkdir -p "$CERTS/$1"
  cat > "$CERTS/$1/hosts.toml" <<EOF
# generated by scripts/containerd-bench.sh: $1 -> local registry $REG, plain http
server = "http://$REG"

[host."http://$REG"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
EOF
}

write_config() {
  mkdir -p "$CDIR" "$CERTS" "$CROOT" "$CSTATE" "$NETD" "$IPAM"
  cat > "$CONF" <<EOF
# generated by scripts/containerd-bench.sh — containerd 1.6, config version 2
version = 2
root = "$CROOT"
state = "$CSTATE"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "$SOCK"

[ttrpc]
  address = "$SOCK.ttrpc"

[debug]
  address = ""
  level = "warn"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$CROOT/opt"

  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "$PAUSE_REF"
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    enable_selinux = false
    max_container_log_line_size = 16384
    # root lacks CAP_SYS_RESOURCE here: a negative oom_score_adj (sandboxes get -998)
    # fails in runc, so clamp to containerd's own value
    restrict_oom_score_adj = true

    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          BinaryName = "$(command -v runc)"
          Root = "$CSTATE/runc"
          SystemdCgroup = false
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.crun]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.crun.options]
          BinaryName = "$(command -v crun || echo /usr/bin/crun)"
          Root = "$CSTATE/crun"
          SystemdCgroup = false

    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "$CNI_BIN"
      conf_dir = "$NETD"
      max_conf_num = 1

    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "$CERTS"
EOF
  hosts_toml "$REG"
  # mirrors: well-known registries resolve to the local one (nothing may reach the internet)
  local r
  for r in docker.io registry.k8s.io; do hosts_toml "$r"; done
  # the CNI config both runtimes use (kept if present: the runtime under test shares it)
  if [ ! -f "$CONFLIST" ]; then
    cat > "$CONFLIST" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "tether-bench",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "tbench0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$IPAM",
        "ranges": [[{ "subnet": "$SUBNET" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } },
    { "type": "loopback" }
  ]
}
EOF
  fi
  log "wrote $CONF and $CONFLIST"
}

up() {
  check_tools
  if running; then log "already running (pid $(cat "$PIDF")): unix://$SOCK"; return 0; fi
  ensure_netns
  mkdir -p "$ROOT" "$DIR"
  build_pause
  push_pause
  write_config
  rm -f "$SOCK" "$SOCK.ttrpc"
  # own session; nsenter joins only the network namespace (not `ip netns exec`, which
  # remounts /sys and hides /sys/fs/cgroup from runc); setsid/nsenter exec, so $! is containerd
  setsid nsenter --net="$NETNS_PATH" -- containerd --config "$CONF" >>"$LOG" 2>&1 < /dev/null &
  echo $! > "$PIDF"
  local ok=0
  for _ in $(seq 1 300); do
    if [ -S "$SOCK" ] && ctr_ version >/dev/null 2>&1; then ok=1; break; fi
    running || break
    sleep 0.1
  done
  [ $ok = 1 ] || { tail -20 "$LOG" >&2; die "containerd did not come up (log $LOG)"; }
  local cri
  cri=$(ctr_ plugins ls | awk '$1=="io.containerd.grpc.v1" && $2=="cri" {print $NF}')
  [ "$cri" = ok ] || { grep -iE 'cri|error' "$LOG" | tail -20 >&2; die "CRI plugin: ${cri:-missing}"; }
  log "containerd up (pid $(cat "$PIDF")) in netns $NETNS: unix://$SOCK"
}

cri_cleanup() {
  # through the CRI, so that the CNI DEL runs and containerd unmounts rootfs/shm itself
  if [ -x "$PY" ] && (cd "$REPO" && in_ns "$PY" -m bench --endpoint "unix://$SOCK" --cleanup-all \
        --rpc-timeout 60 2>&1 | sed 's/^/  /'); then
    return 0
  fi
  log "CRI cleanup failed: killing tasks with ctr"
  local t
  for t in $(ctr_ -n k8s.io tasks ls -q 2>/dev/null); do
    ctr_ -n k8s.io tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true
  done
  sleep 1
  for t in $(ctr_ -n k8s.io tasks ls -q 2>/dev/null); do ctr_ -n k8s.io tasks rm -f "$t" >/dev/null 2>&1 || true; done
}

stop_pid() { # pid
  local pid=$1 i
  kill "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

remove_cgroups() { # leftover empty cgroups of the bench pods
  local h d
  for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
    for d in "$h"tether-bench; do
      [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
  done
}

down() {
  if running; then
    log "removing all CRI pods"
    cri_cleanup
    log "stopping containerd (pid $(cat "$PIDF"))"
    stop_pid "$(cat "$PIDF")"
  fi
  rm -f "$PIDF"
  local s
  for s in $(our_shims); do log "stopping leftover shim $s"; stop_pid "$s"; done
  local m
  for m in $(findmnt -rn -o TARGET | grep -E "^($CROOT|$CSTATE)(/|$)" | sort -r || true); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    log "unmounted $m"
  done
  rm -f "$SOCK" "$SOCK.ttrpc"
  remove_cgroups
  log "containerd down"
}

purge() {
  down
  if findmnt -rn -o TARGET | grep -qE "^($CROOT|$CSTATE)(/|$)"; then
    die "mounts remain under $CROOT or $CSTATE; not deleting"
  fi
  rm -rf "$CROOT" "$CDIR" "$IPAM"
  rm -f "$CONFLIST"; rmdir "$NETD" 2>/dev/null || true
  if [ -f "$NETNS_MARK" ] && [ -e "$NETNS_PATH" ]; then
    ip netns del "$NETNS" && log "deleted netns $NETNS"
  fi
  rm -f "$NETNS_MARK"
  log "purged $CROOT $CDIR $IPAM"
}

status() {
  if running; then
    echo "containerd running (pid $(cat "$PIDF")) in netns $NETNS: unix://$SOCK"
    ctr_ version | sed 's/^/  /'
    echo "  shims: $(our_shims | tr '\n' ' ')"
  else
    echo "containerd not running"; return 1
  fi
}

# crun 1.8 refuses hybrid cgroups while a controller (hugetlb here) is on cgroup2: mount
# every such controller as a v1 hierarchy (systemd's hybrid layout); cgroup2 then has none.
cgroups_fix() { bash "$(dirname "${BASH_SOURCE[0]}")/cgroups-fix.sh"; }

case "${1:-}" in
  up) up ;;
  config) write_config ;;  # the CNI config (and containerd's) without starting containerd
  down) down ;;
  purge) purge ;;
  status) status ;;
  endpoint) echo "unix://$SOCK" ;;
  cgroups-fix) cgroups_fix ;;
  *) echo "usage: $0 up|down|purge|status|endpoint|cgroups-fix" >&2; exit 2 ;;
esac
