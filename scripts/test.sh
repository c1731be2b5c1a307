#!/usr/bin/env bash
# scripts/test.sh [PYTEST ARGS...] — THE test command (`make test` runs it; so does CI).
#   1. scripts/install-deps.sh (Debian packages, venv, pip install -e '.[test]'), then
#      scripts/image-inputs.sh (the cached base rootfs, .debs and wheels the Dockerfile's
#      offline build needs: fetched here, in the host namespace, as the test netns has no
#      mirror; a no-op when current; a failure only warns, tests/e2e/test_image.py reports it)
#   2. ruff check . and mypy (config in pyproject.toml)   [TETHER_SKIP_LINT=1 skips]
#   3. the offline test images (tests/images/, cached), while the network is reachable
#   4. pytest inside a fresh network namespace (`unshare --net --fork`, lo up; the mount
#      namespace is kept, as runc needs /sys/fs/cgroup), so nothing a test starts can
#      reach the host's network.
# Extra arguments go to pytest:  scripts/test.sh -k registry   |   make test ARGS='-x'
# Exit code: pytest's (5, "no tests collected", counts as a failure); when pytest passes
# but ruff or mypy failed, theirs (lint failures do not stop the tests from running).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${TETHER_VENV:-$REPO/.venv}
cd "$REPO"
start=$(date +%s)
elapsed() { local s=$(($(date +%s) - start)); printf '%dm%02ds' $((s / 60)) $((s % 60)); }
step() { printf '\n==> %s\n' "$*"; }
trap 'rc=$?; echo "scripts/test.sh: exit $rc, elapsed $(elapsed)"' EXIT

step "install-deps"
bash "$REPO/scripts/install-deps.sh"
step "image inputs (for the Dockerfile's offline build)"
TETHER_VENV=$VENV bash "$REPO/scripts/image-inputs.sh" \
  || echo "scripts/test.sh: WARNING: scripts/image-inputs.sh failed; the image stage cannot run" >&2

lint_rc=0
if [ "${TETHER_SKIP_LINT:-0}" != 1 ]; then
  step "ruff check ."
  "$VENV/bin/ruff" check . || lint_rc=$?
  step "mypy"
  "$VENV/bin/mypy" || { r=$?; [ "$lint_rc" -ne 0 ] || lint_rc=$r; }
  [ "$lint_rc" -eq 0 ] || echo "scripts/test.sh: LINT FAILED (exit $lint_rc); running the tests anyway" >&2
fi

step "cgroups (crun needs no controller left on a hybrid host's cgroup2)"
bash "$REPO/scripts/cgroups-fix.sh"

# Built here, not by the first test that wants them: on a fresh machine critest.sh downloads
# Debian's busybox, and inside the test netns there is no network.
step "test images (cached; tests/images/)"
bash "$REPO/tests/images/build.sh" >/dev/null
bash "$REPO/tests/images/critest.sh" >/dev/null

# A temp dir of this run's own, not pytest's /tmp/pytest-of-root: every pytest session makes
# that one 0700 again when it starts, and a user-namespaced container's root must search the
# dirs above its rootfs (tests/rig/daemon.py's searchable); two runs at once stay apart.
basetemp=()
case " $* " in *" --basetemp"*) ;; *)
  mkdir -p /tmp/tether-test
  # runs older than a day go, unless something is still mounted in them (rm would follow)
  for old in $(find /tmp/tether-test -mindepth 1 -maxdepth 1 -name 'run-*' -mmin +1440); do
    grep -q " $old/" /proc/self/mountinfo || rm -rf "$old"
  done
  basetemp=("--basetemp=/tmp/tether-test/run-$(date +%Y%m%d-%H%M%S)-$$") ;;
esac

step "pytest $* (in a private network namespace)"
TETHER_HOST_NETNS_INO=$(stat -L -c %i /proc/self/ns/net)
export TETHER_HOST_NETNS_INO
set +e
unshare --net --fork --kill-child -- \
  bash "$REPO/scripts/in-test-netns.sh" "$VENV/bin/python" -m pytest "${basetemp[@]}" "$@"
rc=$?
set -e

if [ "$rc" -eq 5 ]; then
  echo "scripts/test.sh: pytest collected no tests (exit 5): failing" >&2
fi
if [ "$rc" -eq 0 ] && [ "$lint_rc" -ne 0 ]; then
  echo "scripts/test.sh: tests passed but lint failed" >&2
  rc=$lint_rc
fi
exit "$rc"
