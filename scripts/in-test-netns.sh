#!/usr/bin/env bash
# scripts/in-test-netns.sh CMD...  — the inside half of scripts/test.sh.
# Runs as the child of `unshare --net --fork`, so in a brand-new network namespace that
# only this test run uses (the mount namespace stays the host's: runc needs /sys/fs/cgroup).
# Brings `lo` up, checks the namespace really is a new one, runs CMD, then ends (by pid)
# whatever CMD left running in this namespace, and exits with CMD's exit code.
set -uo pipefail

die() { printf '[test-netns] ERROR: %s\n' "$*" >&2; exit 3; }

own=$(stat -L -c %i /proc/self/ns/net)
[ -n "${TETHER_HOST_NETNS_INO:-}" ] || die "TETHER_HOST_NETNS_INO unset: run via scripts/test.sh"
[ "$own" != "$TETHER_HOST_NETNS_INO" ] || die "still in the host network namespace"
ip link set lo up || die "cannot bring lo up"
export TETHER_TEST_NETNS_INO=$own

"$@"
rc=$?

# processes still in this namespace (other than this script and the unshare parent) were
# started by this run: report them and end them
leftovers() {
  local p ino
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [ "$p" = $$ ] || [ "$p" = "$PPID" ] || [ "$p" = "$BASHPID" ] && continue
    ino=$(stat -L -c %i "/proc/$p/ns/net" 2>/dev/null) || continue
    [ "$ino" = "$own" ] && echo "$p"
  done
}
left=$(leftovers)
if [ -n "$left" ]; then
  echo "[test-netns] WARNING: processes left behind by the tests, ending them:" >&2
  for p in $left; do
    printf '  %s %s\n' "$p" "$(tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | cut -c1-120)" >&2
    kill -TERM "$p" 2>/dev/null
  done
  for _ in $(seq 1 50); do
    alive=""
    for p in $left; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
    [ -z "$alive" ] && break
    sleep 0.1
  done
  for p in $alive; do kill -KILL "$p" 2>/dev/null; done
fi
exit "$rc"
