#!/usr/bin/env bash
# scripts/image-inputs.sh [--print] — what tests/e2e/test_image.py needs to build the
# Dockerfile with buildah OFFLINE, inside the test network namespace (where no mirror is
# reachable). scripts/test.sh runs it in the host namespace before pytest; it is a no-op
# while its cache is current. Run as root.
#
# Made once per key, under ${TETHER_IMAGE_CACHE:-/var/cache/tether-test/image}/<key>/:
#   base.tar  a Debian 12 minbase root filesystem from mmdebstrap (apt lists and caches
#             emptied, sources in /etc/apt/sources.list.d/debian.sources), the local
#             stand-in for debian:12-slim, which cannot be pulled here
#   debs/     the .debs the Dockerfile's NODE_PACKAGES need beyond that base, with a
#             Packages index: a flat apt repository the build reads instead of the mirror
#   wheels/   wheels of Tether's dependencies and of its build backend, for
#             pip --no-index --find-links
# The key hashes what decides the contents: the Dockerfile's NODE_PACKAGES line, the
# pyproject.toml dependencies, and this script. The machine's apt mirror is a fixed
# snapshot, so no date goes into the key; TETHER_IMAGE_REFRESH=1 rebuilds anyway.
# A key's dir is touched whenever it is used; other keys unused for a week are removed (not
# at once: checkouts on other branches may be using theirs). --print: print the current key's dir if it is complete (exit 0),
# else say so (exit 3); never fetches anything.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${TETHER_VENV:-$REPO/.venv}
CACHE=${TETHER_IMAGE_CACHE:-/var/cache/tether-test/image}
SUITE=bookworm
PY=3.11   # Debian 12's python3, which the image's venv uses

log() { printf '[image-inputs] %s\n' "$*" >&2; }
die() { printf '[image-inputs] ERROR: %s\n' "$*" >&2; exit 1; }

packages=$(sed -n 's/^ARG NODE_PACKAGES="\(.*\)"$/\1/p' "$REPO/Dockerfile")
[ -n "$packages" ] || die "no ARG NODE_PACKAGES=\"...\" line in $REPO/Dockerfile"
deps=$("$VENV/bin/python" - "$REPO/pyproject.toml" <<'EOF'
import sys, tomllib
doc = tomllib.load(open(sys.argv[1], "rb"))
print("\n".join([*doc["project"]["dependencies"], *doc["build-system"]["requires"]]))
EOF
)
key=$( { echo "$SUITE $PY"; echo "$packages"; echo "$deps"; cat "${BASH_SOURCE[0]}"; } \
       | sha256sum | cut -c1-16)
dir=$CACHE/$key

complete() { [ -f "$dir/base.tar" ] && [ -f "$dir/debs/Packages" ] && [ -f "$dir/.complete" ]; }

if [ "${1:-}" = --print ]; then
  if complete; then touch "$dir"; echo "$dir"; exit 0; fi
  log "no complete image inputs at $dir: run scripts/image-inputs.sh as root (outside the test netns)"
  exit 3
fi

[ "$(id -u)" -eq 0 ] || die "run as root (mmdebstrap --mode=root)"
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9   # another test run may be making the same inputs

prune() {
  find "$CACHE" -mindepth 1 -maxdepth 1 -type d ! -name '.*' ! -path "$dir" -mtime +7 \
    -exec rm -rf {} +
}

if complete && [ "${TETHER_IMAGE_REFRESH:-0}" != 1 ]; then
  touch "$dir"
  prune
  log "current: $dir"
  exit 0
fi
for tool in mmdebstrap dpkg-scanpackages; do
  command -v "$tool" >/dev/null || die "$tool not found (run scripts/install-deps.sh)"
done

start=$(date +%s)
tmp=$(mktemp -d "$CACHE/.new-$key.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/debs" "$tmp/wheels"

log "base: mmdebstrap --variant=minbase $SUITE; debs for: $packages"
# The node packages are only downloaded (into debs/), not installed: the Dockerfile's own
# apt-get installs them. As in debian:12-slim, dpkg leaves out manuals, docs and locales
# (the rule stays in the base, so it holds for the build's packages too). Valid-Until is not checked because the mirror is a dated snapshot.
# shellcheck disable=SC2016  # the hooks' $1 is mmdebstrap's chroot path, expanded by it
mmdebstrap --quiet --variant=minbase --mode=root --format=tar \
  --aptopt='Acquire::Check-Valid-Until "false"' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --customize-hook="chroot \"\$1\" apt-get install --download-only -y -qq --no-install-recommends $packages" \
  --customize-hook="cp \"\$1\"/var/cache/apt/archives/*.deb '$tmp/debs/'" \
  --customize-hook='chroot "$1" apt-get clean' \
  --customize-hook='rm -f "$1"/etc/apt/apt.conf.d/99mmdebstrap "$1"/etc/apt/sources.list' \
  --customize-hook='printf "%s\n" "Types: deb" "URIs: http://deb.debian.org/debian" "Suites: bookworm bookworm-updates" "Components: main" "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" "" "Types: deb" "URIs: http://deb.debian.org/debian-security" "Suites: bookworm-security" "Components: main" "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" > "$1"/etc/apt/sources.list.d/debian.sources' \
  "$SUITE" "$tmp/base.tar" \
  "deb http://deb.debian.org/debian $SUITE main" \
  "deb http://deb.debian.org/debian $SUITE-updates main" \
  "deb http://deb.debian.org/debian-security $SUITE-security main"
(cd "$tmp/debs" && dpkg-scanpackages --multiversion . /dev/null 2>/dev/null > Packages)
log "base.tar $(du -h "$tmp/base.tar" | cut -f1), $(ls "$tmp/debs" | grep -c '\.deb$') debs"

log "wheels for python $PY: $(echo "$deps" | tr '\n' ' ')"
mapfile -t dep_list <<< "$deps"
"$VENV/bin/python" -m pip download -q --disable-pip-version-check --only-binary=:all: \
  --python-version "$PY" -d "$tmp/wheels" "${dep_list[@]}" \
  2> >(grep -v "^WARNING: Location 'file:.*' is ignored" >&2)   # absent local indexes
log "$(ls "$tmp/wheels" | wc -l) wheels"

touch "$tmp/.complete"
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
chmod 755 "$dir"
prune
log "made $dir in $(($(date +%s) - start))s"
