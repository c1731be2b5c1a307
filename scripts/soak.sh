#!/usr/bin/env bash
# scripts/soak.sh [--bad N] [--pods N] — the soak of docs/benchmarks.md: a fresh Tether in
# the benchmark's network namespace (scripts/bench.sh --no-containerd --keep, one short
# workload to set it up), then `python -m bench.soak` against it (10 000 bad requests and
# 1 000 pod lifecycles by default), then everything torn down. The JSON report goes to
# bench-results/soak.json; exit status 1 when RSS grew by more than 5 MiB over the warmed-up
# value, fds grew, a bad request got an unexpected code, or a pod was left.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export BENCH_NETNS=${BENCH_NETNS:-tether-bench} BENCH_DIR=${BENCH_DIR:-/run/tether-bench}
PY=${BENCH_PY:-$REPO/.venv/bin/python}
IMAGE=${IMAGE:-127.0.0.1:5000/tether-bench/busybox:latest}  # what scripts/bench.sh pushes
OUT=${OUT:-$REPO/bench-results}
mkdir -p "$OUT"
bash "$REPO/scripts/bench.sh" --no-containerd --keep --out "$OUT" -- -w basic --basic-iterations 1
trap 'bash "$REPO/scripts/bench.sh" --down' EXIT
rc=0
(cd "$REPO" && nsenter --net="/run/netns/$BENCH_NETNS" -- "$PY" -m bench.soak \
  --endpoint "unix://$BENCH_DIR/tether/run/tether.sock" --image "$IMAGE" --out "$OUT/soak.json" \
  "$@") || rc=$?
exit "$rc"
