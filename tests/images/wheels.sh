#!/usr/bin/env bash
# tests/images/wheels.sh — a wheelhouse of Tether and its dependencies, as the node-agent
# image carries it (/opt/tether/wheels) and the chart's installer installs from it:
#
#   $TETHER_TEST_IMAGES/wheels/        (default /var/cache/tether-test-images/wheels)
#
# Needs PyPI (run before the tests enter their network namespace: scripts/test.sh does).
# The dependencies are downloaded again only when pyproject.toml changes; Tether's own wheel
# is rebuilt when its sources do. A lock serialises concurrent runs.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${TETHER_TEST_IMAGES:-/var/cache/tether-test-images}
OUT=$CACHE/wheels
PY=${TETHER_VENV:-$REPO/.venv}/bin/python

mkdir -p "$OUT"
exec 9>"$CACHE/wheels.lock"
flock 9

deps_key=$(sha256sum < "$REPO/pyproject.toml" | cut -d' ' -f1)
src_key=$(cd "$REPO" && find shim podsandbox cni bench pyproject.toml -type f \
  \( -name '*.py' -o -name '*.pyi' -o -name py.typed -o -name pyproject.toml \) -print0 \
  | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)

if [ "$(cat "$OUT/.deps" 2>/dev/null)" != "$deps_key" ]; then
  rm -f "$OUT"/*.whl
  # the runtime dependencies only: what `pip install tether` needs
  "$PY" -m pip wheel -q -w "$OUT" "$REPO" >/dev/null
  echo "$deps_key" > "$OUT/.deps"
  echo "$src_key" > "$OUT/.src"
elif [ "$(cat "$OUT/.src" 2>/dev/null)" != "$src_key" ]; then
  rm -f "$OUT"/tether-*.whl
  "$PY" -m pip wheel -q --no-deps -w "$OUT" "$REPO" >/dev/null
  echo "$src_key" > "$OUT/.src"
fi
ls "$OUT"/tether-*.whl >/dev/null
