#!/usr/bin/env bash
# scripts/cgroups-fix.sh — make a hybrid cgroup host usable by crun 1.8.
# crun refuses hybrid mode while any controller sits on cgroup2 (here: hugetlb, which this
# host's boot leaves there). Mount every such controller as a v1 hierarchy, the layout
# systemd's own hybrid mode gives; cgroup2 is then left with no controllers. Idempotent;
# nothing to do on pure v1 or pure v2 hosts.
set -euo pipefail
u=/sys/fs/cgroup/unified
[ -r "$u/cgroup.controllers" ] || exit 0
for c in $(cat "$u/cgroup.controllers"); do
  findmnt -rn -t cgroup -o OPTIONS | tr ',' '\n' | grep -qx "$c" && continue
  mkdir -p "/sys/fs/cgroup/$c"
  mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c"
  echo "[cgroups-fix] mounted the $c controller as a v1 hierarchy at /sys/fs/cgroup/$c"
done
[ -z "$(cat "$u/cgroup.controllers")" ] || {
  echo "[cgroups-fix] cgroup2 still has controllers: $(cat "$u/cgroup.controllers")" >&2; exit 1; }
