#!/usr/bin/env bash
# tests/images/build.sh — build Tether's test images OFFLINE (no base image is pulled:
# the root filesystems are made from Debian's busybox-static) with umoci, as one OCI
# image layout per image, tag "latest":
#
#   $TETHER_TEST_IMAGES/<name>        (default /var/cache/tether-test-images/<name>)
#
#   busybox    busybox-static + every applet symlink, /etc/passwd+group (root, nobody),
#              Cmd ["sh"], Env PATH
#   web        busybox + /www/index.html; Entrypoint busybox httpd -f -p 80 -h /www,
#              ExposedPorts 80/tcp
#   layers     5 layers: busybox | /data + /EXPECTED + /check-expected | changes |
#              whiteout of /data/gone.txt (.wh.gone.txt) | /data/dir replaced by an opaque
#              dir (.wh..wh..opq; lower had a, b; upper has only c).
#              Cmd ["/check-expected"] prints LAYERS-OK when /EXPECTED holds.
#   user       busybox + alice (1000), bob (1001), group staff (50) with alice in it,
#              /home/alice, /home/bob; User "1000:1000"
#   multiarch  an OCI image index: linux/amd64 (/ARCH = amd64) and linux/arm64
#              (/ARCH = arm64; same busybox binary, config says arm64)
#   inserted   busybox + two layers written by `umoci insert` (/inserted/one.txt, two.txt):
#              umoci 0.4.7 writes them without the end-of-archive blocks, as registries
#              hold many such layers; Tether must pull them as Docker and containerd do
#
# Reproducible: fixed SOURCE_DATE_EPOCH, fixed mtimes, fixed created/history dates, so the
# same inputs give the same digests. Skipped when the cache's stamp (a hash of this file,
# the busybox binary and the umoci version) is current. A lock serialises concurrent runs.
#
# Usage: tests/images/build.sh [--force]
set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
CACHE=${TETHER_TEST_IMAGES:-/var/cache/tether-test-images}
BUSYBOX=${BUSYBOX:-/bin/busybox}
export SOURCE_DATE_EPOCH=1704067200          # 2024-01-01T00:00:00Z, fixed on purpose
CREATED=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
PATH_ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
IMAGES=(busybox web layers user multiarch inserted)
HIST=(--history.created "$CREATED" --history.author tether-tests)

log() { printf '[build-images] %s\n' "$*"; }
die() { printf '[build-images] ERROR: %s\n' "$*" >&2; exit 1; }

for t in umoci jq sha256sum flock "$BUSYBOX"; do
  command -v "$t" >/dev/null 2>&1 || die "missing $t (run scripts/install-deps.sh)"
done

stamp_value() {
  { sha256sum < "$SELF"; sha256sum < "$(readlink -f "$BUSYBOX")"; umoci --version; } \
    | sha256sum | cut -d' ' -f1
}
WANT=$(stamp_value)

up_to_date() {
  [ -f "$CACHE/stamp" ] && [ "$(cat "$CACHE/stamp")" = "$WANT" ] || return 1
  local n
  for n in "${IMAGES[@]}"; do [ -f "$CACHE/$n/index.json" ] || return 1; done
}

force=0
[ "${1:-}" = --force ] && force=1

if [ $force = 0 ] && up_to_date; then
  log "images in $CACHE are up to date"
  exit 0
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
if [ $force = 0 ] && up_to_date; then        # someone else built them while we waited
  log "images in $CACHE are up to date"
  exit 0
fi

umask 022
WORK=$(mktemp -d "$CACHE/.build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
OUT=$WORK/out
mkdir -p "$OUT"

file -L "$BUSYBOX" 2>/dev/null | grep -q 'statically linked' \
  || die "$BUSYBOX is not statically linked (install busybox-static)"

# ------------------------------------------------------------------ helpers
fix_times() { find "$1" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} + ; }

new_layout() { # layout
  umoci init --layout "$1"
  umoci new --image "$1:latest"
}

copy_layout() { # from to
  cp -a "$1" "$2"
}

# NOTE: `umoci insert` of this umoci (0.4.7, Debian) writes layer tarballs without
# their closing padding/end-of-archive blocks; only the "inserted" image uses it, on
# purpose. Every other layer here is made by unpack + change + repack, or (the opaque
# whiteout, which repack never produces) written with GNU tar and added verbatim with
# `umoci raw add-layer`.
unpack() { # image-ref bundle
  umoci unpack --image "$1" "$2" >/dev/null
}

repack() { # image-ref bundle created_by
  fix_times "$2/rootfs"
  umoci repack --image "$1" "${HIST[@]}" --history.created_by "$3" "$2"
  rm -rf "$2"
}

add_tar_layer() { # image-ref dir-with-content created_by: the whole of dir, as one layer
  local tarball
  tarball=$(mktemp "$WORK/layer.XXXXXX")
  fix_times "$2"
  # the members are dir's children (no "./" entry: that would set the mode of / itself)
  # shellcheck disable=SC2046  # (stage dirs hold simple names only)
  LC_ALL=C tar --create --file "$tarball" --format=ustar --sort=name --numeric-owner \
    --owner=0 --group=0 --mtime="@$SOURCE_DATE_EPOCH" -C "$2" $(cd "$2" && LC_ALL=C ls -A)
  umoci raw add-layer --image "$1" "${HIST[@]}" --history.created_by "$3" "$tarball"
  rm -f "$tarball"
}

config() { # image-ref created_by [umoci config args...]
  local ref=$1 by=$2; shift 2
  umoci config --image "$ref" --created "$CREATED" --author tether-tests \
    "${HIST[@]}" --history.created_by "$by" "$@"
}

stage() { mktemp -d "$WORK/stage.XXXXXX"; }

# ------------------------------------------------------------------ busybox
build_busybox() {
  local L=$OUT/busybox B=$WORK/bundle-busybox r a
  log "busybox:latest"
  new_layout "$L"
  unpack "$L:latest" "$B"
  r=$B/rootfs
  mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,etc,root,home,tmp,var/tmp,proc,sys,dev,run}
  chmod 1777 "$r/tmp" "$r/var/tmp"
  chmod 0700 "$r/root"
  install -m 0755 "$BUSYBOX" "$r/bin/busybox"
  # every applet busybox-static has, at its usual place (sh sleep top ps nc httpd id ...)
  for a in $("$BUSYBOX" --list-full); do
    [ "$a" = bin/busybox ] && continue
    mkdir -p "$r/$(dirname "$a")"
    ln -sfn /bin/busybox "$r/$a"
  done
  printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' \
    'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' > "$r/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nobody:x:65534:' > "$r/etc/group"
  printf 'tether test image, built from Debian busybox-static (%s)\n' \
    "$("$BUSYBOX" 2>&1 | head -1)" > "$r/etc/tether-test-image"
  repack "$L:latest" "$B" "busybox-static rootfs"
  config "$L:latest" "umoci config" --os linux --architecture amd64 \
    --config.env "$PATH_ENV" --config.workingdir / --config.cmd sh
}

# ------------------------------------------------------------------ web
build_web() {
  local L=$OUT/web B=$WORK/bundle-web
  log "web:latest"
  copy_layout "$OUT/busybox" "$L"
  unpack "$L:latest" "$B"
  mkdir -p "$B/rootfs/www"
  cat > "$B/rootfs/www/index.html" <<'HTML'
<!DOCTYPE html>
<html><head><title>tether test web</title></head>
<body><h1>hello from tether-test-web</h1></body></html>
HTML
  repack "$L:latest" "$B" "add /www"
  config "$L:latest" "umoci config" \
    --config.entrypoint /bin/busybox --config.entrypoint httpd --config.entrypoint -f \
    --config.entrypoint -p --config.entrypoint 80 --config.entrypoint -h \
    --config.entrypoint /www --clear config.cmd --config.exposedports 80/tcp \
    --config.stopsignal SIGTERM
}

# ------------------------------------------------------------------ layers
build_layers() {
  local L=$OUT/layers B=$WORK/bundle-layers r s
  log "layers:latest"
  copy_layout "$OUT/busybox" "$L"                       # layer 1: busybox rootfs
  # layer 2: /data, /EXPECTED, /check-expected
  unpack "$L:latest" "$B"
  r=$B/rootfs
  mkdir -p "$r/data/dir"
  echo "layer2: keep"                  > "$r/data/keep.txt"
  echo "layer2: deleted by layer 4"    > "$r/data/gone.txt"
  echo "layer2: old"                   > "$r/data/changed.txt"
  echo "layer2: a"                     > "$r/data/dir/a"
  echo "layer2: b"                     > "$r/data/dir/b"
  cat > "$r/EXPECTED" <<'TXT'
# tether test image "layers": what a correct unpacking of its 5 layers shows.
# layer 1 busybox rootfs; layer 2 adds /data (keep.txt gone.txt changed.txt dir/a dir/b);
# layer 3 rewrites changed.txt and adds added.txt; layer 4 whiteouts gone.txt (.wh.gone.txt);
# layer 5 replaces /data/dir by an opaque directory (.wh..wh..opq) holding only c.
# Lines: "present PATH CONTENT" (a file with exactly that content) or "absent PATH".
present /data/keep.txt layer2: keep
present /data/changed.txt layer3: new
present /data/added.txt layer3: added
absent /data/gone.txt
present /data/dir/c layer5: c
absent /data/dir/a
absent /data/dir/b
TXT
  cat > "$r/check-expected" <<'SH'
#!/bin/sh
# checks /EXPECTED; prints LAYERS-OK and exits 0 when every line holds
rc=0
while read -r kind path content; do
  case "$kind" in
    present) if [ ! -f "$path" ] || [ "$(cat "$path")" != "$content" ]; then
               echo "FAIL: $path should hold '$content'"; rc=1; fi ;;
    absent)  if [ -e "$path" ]; then echo "FAIL: $path should be absent"; rc=1; fi ;;
  esac
done < /EXPECTED
[ "$rc" = 0 ] && echo LAYERS-OK
exit "$rc"
SH
  chmod 0755 "$r/check-expected"
  repack "$L:latest" "$B" "layer 2: /data, /EXPECTED"
  # layer 3: change one file, add one
  unpack "$L:latest" "$B"
  echo "layer3: new"   > "$B/rootfs/data/changed.txt"
  echo "layer3: added" > "$B/rootfs/data/added.txt"
  repack "$L:latest" "$B" "layer 3: change /data/changed.txt, add /data/added.txt"
  # layer 4: plain whiteout (repack of a removed file writes data/.wh.gone.txt)
  unpack "$L:latest" "$B"
  rm "$B/rootfs/data/gone.txt"
  repack "$L:latest" "$B" "layer 4: whiteout /data/gone.txt"
  # layer 5: opaque directory: data/dir/.wh..wh..opq + data/dir/c
  s=$(stage)
  mkdir -p "$s/data/dir"
  : > "$s/data/dir/.wh..wh..opq"
  echo "layer5: c" > "$s/data/dir/c"
  add_tar_layer "$L:latest" "$s" "layer 5: opaque /data/dir with only c"
  config "$L:latest" "umoci config" --clear config.cmd --config.cmd /check-expected \
    --config.label org.tether.test=layers
}

# ------------------------------------------------------------------ user
build_user() {
  local L=$OUT/user B=$WORK/bundle-user r
  log "user:latest"
  copy_layout "$OUT/busybox" "$L"
  unpack "$L:latest" "$B"
  r=$B/rootfs
  printf '%s\n' 'alice:x:1000:1000:Alice:/home/alice:/bin/sh' \
    'bob:x:1001:1001:Bob:/home/bob:/bin/sh' >> "$r/etc/passwd"
  printf '%s\n' 'staff:x:50:alice' 'alice:x:1000:' 'bob:x:1001:' >> "$r/etc/group"
  mkdir -p "$r/home/alice" "$r/home/bob"
  echo "alice's file" > "$r/home/alice/hello.txt"
  chown -R 1000:1000 "$r/home/alice"
  chown -R 1001:1001 "$r/home/bob"
  chmod 0750 "$r/home/alice" "$r/home/bob"
  repack "$L:latest" "$B" "users alice (1000, staff), bob (1001)"
  config "$L:latest" "umoci config" --config.user 1000:1000 --config.workingdir /home/alice
}

# ------------------------------------------------------------------ multiarch
build_multiarch() {
  local L=$OUT/multiarch arch desc manifests="" blob digest size
  log "multiarch:latest (index: linux/amd64, linux/arm64)"
  copy_layout "$OUT/busybox" "$L"
  for arch in amd64 arm64; do
    umoci tag --image "$L:latest" "$arch"
    unpack "$L:$arch" "$WORK/bundle-$arch"
    echo "$arch" > "$WORK/bundle-$arch/rootfs/ARCH"
    repack "$L:$arch" "$WORK/bundle-$arch" "add /ARCH ($arch)"
    config "$L:$arch" "umoci config" --os linux --architecture "$arch"
    desc=$(jq -c --arg t "$arch" \
      '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t)
       | {mediaType, digest, size, platform: {architecture: $t, os: "linux"}}' \
      "$L/index.json")
    [ -n "$desc" ] || die "no manifest for tag $arch in $L"
    manifests=${manifests:+$manifests,}$desc
  done
  blob=$WORK/index.json
  jq -cn --argjson m "[$manifests]" \
    '{schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: $m}' \
    | tr -d '\n' > "$blob"
  digest=$(sha256sum "$blob" | cut -d' ' -f1)
  size=$(stat -c %s "$blob")
  mv "$blob" "$L/blobs/sha256/$digest"
  jq -cn --arg d "sha256:$digest" --argjson s "$size" \
    '{schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [{mediaType: "application/vnd.oci.image.index.v1+json", digest: $d, size: $s,
                   annotations: {"org.opencontainers.image.ref.name": "latest"}}]}' \
    > "$L/index.json"
}

# ------------------------------------------------------------------ inserted
build_inserted() {
  local L=$OUT/inserted s n
  log "inserted:latest (umoci insert layers)"
  copy_layout "$OUT/busybox" "$L"
  for n in one two; do
    s=$(stage)
    echo "$n" > "$s/$n.txt"
    fix_times "$s"
    umoci insert --image "$L:latest" "${HIST[@]}" --history.created_by "umoci insert $n.txt" \
      "$s/$n.txt" "/inserted/$n.txt"
  done
}

build_busybox
build_inserted
build_web
build_layers
build_user
build_multiarch

# drop the intermediate blobs; every blob left must match its digest (a cheap self-check)
for n in "${IMAGES[@]}"; do
  umoci gc --layout "$OUT/$n"
  for b in "$OUT/$n"/blobs/sha256/*; do
    [ "$(sha256sum < "$b" | cut -d' ' -f1)" = "$(basename "$b")" ] || die "bad blob $b"
  done
done

# install into the cache
for n in "${IMAGES[@]}"; do
  rm -rf "$CACHE/$n"
  mv "$OUT/$n" "$CACHE/$n"
done
{
  for n in "${IMAGES[@]}"; do
    printf '%s %s\n' "$n" "$(jq -r '.manifests[0].digest' "$CACHE/$n/index.json")"
  done
} > "$CACHE/digests"
echo "$WANT" > "$CACHE/stamp"
log "built ${IMAGES[*]} into $CACHE:"
sed 's/^/  /' "$CACHE/digests"
