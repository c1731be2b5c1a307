#!/usr/bin/env bash
# tests/images/critest.sh — offline stand-ins for every image critest pulls, built with
# umoci from Debian binaries (no base image), as ONE OCI image layout with a tag per image:
#
#   $TETHER_TEST_IMAGES/critest/        (default /var/cache/tether-test-images/critest)
#   $TETHER_TEST_IMAGES/critest/refs    "TAG REPOSITORY:REF" per line: push oci:critest:TAG
#                                       to <registry>/REPOSITORY:REF; a daemon with mirrors
#                                       for registry.k8s.io, gcr.io and k8s.gcr.io then
#                                       serves them under their public names
#
# critest name (registry.k8s.io/ or gcr.io/ + ...)   what the stand-in holds
#   e2e-test-images/busybox:1.29-2       a normal (dynamic, not "standalone") busybox build, so
#                                        that a masked /bin/ls really is denied; applets as
#                                        hardlinks; util-linux ipcs and procps pgrep (+ libs)
#   e2e-test-images/nginx:1.14-2         nginx.c as /usr/sbin/nginx (comm nginx, "master process"
#                                        cmdline, /var/run/nginx.pid) + busybox httpd on :80
#   k8s-staging-cri-tools/hostnet-nginx-amd64   the same on :12003
#   e2e-test-images/httpd:2.4.39-4       busybox httpd via httpd-foreground, which logs "httpd"
#   e2e-test-images/nonewprivs:1.3       nnp.c setuid root, User 1000 ("Effective uid: N")
#   k8s-staging-cri-tools/test-image-*   busybox plus a marker file, tags and users as critest
#                                        expects (see the table in build_cri_tools below)
#   pause:3.9                            catatonit as /pause, User 65535
# Not built: test-image-digest@sha256:9700f9a2... (a fixed digest cannot be made offline).
#
# Reproducible (fixed SOURCE_DATE_EPOCH and mtimes), cached by a stamp over this file, the
# sources beside it and the binaries copied in. Usage: tests/images/critest.sh [--force]
set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
SRC=$(dirname "$SELF")/critest
CACHE=${TETHER_TEST_IMAGES:-/var/cache/tether-test-images}
DEST=$CACHE/critest
BUSYBOX_STATIC=/bin/busybox
export SOURCE_DATE_EPOCH=1704067200
CREATED=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
PATH_ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
HIST=(--history.created "$CREATED" --history.author tether-tests)

log() { printf '[critest-images] %s\n' "$*"; }
die() { printf '[critest-images] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (the layers keep owners and a setuid bit)"
for t in umoci gcc ldd dpkg-deb apt-get sha256sum flock file catatonit ipcs pgrep "$BUSYBOX_STATIC"; do
  command -v "$t" >/dev/null 2>&1 || die "missing $t (run scripts/install-deps.sh)"
done
[ -r /usr/lib/x86_64-linux-gnu/libc.a ] || die "missing libc.a (apt-get install libc6-dev)"

stamp_value() {
  { sha256sum "$SELF" "$SRC"/*; sha256sum "$(readlink -f "$BUSYBOX_STATIC")" \
      "$(command -v catatonit)" "$(command -v ipcs)" "$(command -v pgrep)"; umoci --version
    gcc --version | head -1; } | sha256sum | cut -d' ' -f1
}
WANT=$(stamp_value)
up_to_date() { [ -f "$DEST/stamp" ] && [ "$(cat "$DEST/stamp")" = "$WANT" ] && [ -s "$DEST/refs" ]; }

[ "${1:-}" = --force ] || ! up_to_date || { log "images in $DEST are up to date"; exit 0; }
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
[ "${1:-}" = --force ] || ! up_to_date || { log "images in $DEST are up to date"; exit 0; }

umask 022
WORK=$(mktemp -d "$CACHE/.critest.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
L=$WORK/layout
REFS=()

fix_times() { find "$1" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} + ; }
is_static() { file -L "$1" | grep -q 'statically linked'; }

# an ELF binary into a rootfs, with the shared libraries it needs
copy_bin() { # src rootfs dest
  local lib
  install -D -m 0755 "$1" "$2$3"
  is_static "$1" && return 0
  for lib in $(ldd "$1" | grep -oE '/[^ ]+' | sort -u); do
    [ -e "$2$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$2$lib"
  done
}

# FROM: a new tag with the rootfs of another (or of nothing) unpacked at $B/rootfs
B=
from() { # base-tag|scratch new-tag
  B=$WORK/bundle-$2
  if [ "$1" = scratch ]; then umoci new --image "$L:$2"; else umoci tag --image "$L:$1" "$2"; fi
  umoci unpack --image "$L:$2" "$B" >/dev/null
}
commit() { # tag created_by
  fix_times "$B/rootfs"
  umoci repack --image "$L:$1" "${HIST[@]}" --history.created_by "$2" "$B"
  rm -rf "$B"
}
config() { # tag created_by [umoci config args]
  local tag=$1 by=$2; shift 2
  umoci config --image "$L:$tag" --created "$CREATED" --author tether-tests --os linux \
    --architecture amd64 "${HIST[@]}" --history.created_by "$by" "$@"
}
retag_config() { # from-tag new-tag created_by [umoci config args]: a config-only child
  local from=$1 tag=$2 by=$3; shift 3
  umoci config --image "$L:$from" --tag "$tag" --created "$CREATED" "${HIST[@]}" \
    --history.created_by "$by" "$@"
}
ref() { REFS+=("$1 $2"); }   # tag repository:ref

etc_files() { # rootfs: /etc/passwd and /etc/group as the official busybox image has them
  mkdir -p "$1/etc"
  printf '%s\n' root:x:0:0:root:/root:/bin/sh daemon:x:1:1:daemon:/usr/sbin:/bin/false \
    bin:x:2:2:bin:/bin:/bin/false sys:x:3:3:sys:/dev:/bin/false sync:x:4:100:sync:/bin:/bin/sync \
    mail:x:8:8:mail:/var/spool/mail:/bin/false www-data:x:33:33:www-data:/var/www:/bin/false \
    operator:x:37:37:Operator:/var:/bin/false nobody:x:65534:65534:nobody:/home:/bin/false \
    > "$1/etc/passwd"
  local g gid=(root:0 daemon:1 bin:2 sys:3 adm:4 tty:5 disk:6 lp:7 mail:8 kmem:9 wheel:10
               cdrom:11 dialout:18 floppy:19 video:28 audio:29 tape:32 www-data:33 operator:37
               utmp:43 plugdev:46 staff:50 lock:54 netdev:82 users:100 nogroup:65534)
  for g in "${gid[@]}"; do
    if [ "${g%%:*}" = wheel ]; then echo "wheel:x:10:root"; else echo "${g%%:*}:x:${g#*:}:"; fi
  done > "$1/etc/group"
}

busybox_root() { # rootfs busybox-binary
  local r=$1 a
  mkdir -p "$r"/{bin,dev,etc,home,proc,root,sys,tmp,usr/bin,usr/sbin,usr/local/bin,var/spool/mail,var/www,var/run,var/tmp}
  chmod 1777 "$r/tmp" "$r/var/tmp"; chmod 0700 "$r/root"
  etc_files "$r"
  copy_bin "$2" "$r" /bin/busybox
  for a in $("$2" --list); do [ "$a" = busybox ] || ln -f "$r/bin/busybox" "$r/bin/$a"; done
}

# Debian's busybox-static runs applets in-process (FEATURE_SH_STANDALONE): a masked /bin/ls
# would change nothing. The dynamic "busybox" package is a normal build; it conflicts with
# busybox-static, so its .deb is unpacked here, not installed.
dynamic_busybox() {
  local d=$CACHE/debs deb
  mkdir -p "$d"
  deb=$(ls "$d"/busybox_*.deb 2>/dev/null | head -1 || true)
  if [ -z "$deb" ]; then
    chown _apt "$d" 2>/dev/null || true
    (cd "$d" && apt-get download -q busybox >/dev/null 2>&1) \
      || { apt-get update -qq >&2 && (cd "$d" && apt-get download -q busybox >/dev/null); } \
      || die "apt-get download busybox failed"
    deb=$(ls "$d"/busybox_*.deb | head -1)
  fi
  dpkg-deb -x "$deb" "$WORK/busybox-deb"
  echo "$WORK/busybox-deb/bin/busybox"
}

umoci init --layout "$L"
gcc -static -O2 -Wall -Wextra -Werror -o "$WORK/nnp" "$SRC/nnp.c"
gcc -static -O2 -Wall -Wextra -Werror -o "$WORK/nginx" "$SRC/nginx.c"
BUSYBOX_DYN=$(dynamic_busybox)

log "base: busybox-static (what the cri-tools test images are built FROM)"
from scratch base
busybox_root "$B/rootfs" "$BUSYBOX_STATIC"
commit base "busybox-static rootfs"
config base "umoci config" --config.env "$PATH_ENV" --config.workingdir / --config.cmd sh

log "e2e-test-images/busybox:1.29-2"
from scratch e2e-busybox
busybox_root "$B/rootfs" "$BUSYBOX_DYN"
copy_bin "$(command -v ipcs)" "$B/rootfs" /usr/bin/ipcs
copy_bin "$(command -v pgrep)" "$B/rootfs" /usr/bin/pgrep
commit e2e-busybox "busybox (dynamic) + ipcs + pgrep"
config e2e-busybox "umoci config" --config.env "$PATH_ENV" --config.workingdir / --config.cmd sh
ref e2e-busybox e2e-test-images/busybox:1.29-2

log "e2e-test-images/nginx:1.14-2, hostnet-nginx"
from base nginx
r=$B/rootfs
install -D -m 0755 "$WORK/nginx" "$r/usr/sbin/nginx"
mkdir -p "$r/usr/share/nginx/html"
printf '<!DOCTYPE html>\n<html><body><h1>Welcome to nginx!</h1><p>tether critest stand-in</p></body></html>\n' \
  > "$r/usr/share/nginx/html/index.html"
commit nginx "nginx stand-in (nginx.c) + /usr/share/nginx/html"
config nginx "umoci config" --config.env NGINX_PORT=80 --clear config.cmd \
  --config.cmd nginx --config.cmd -g --config.cmd 'daemon off;' \
  --config.exposedports 80/tcp --config.stopsignal SIGTERM
ref nginx e2e-test-images/nginx:1.14-2
retag_config nginx hostnet-nginx "NGINX_PORT=12003" --config.env NGINX_PORT=12003 \
  --config.exposedports 12003/tcp
ref hostnet-nginx k8s-staging-cri-tools/hostnet-nginx-amd64:latest

log "e2e-test-images/httpd:2.4.39-4"
from base httpd
r=$B/rootfs
mkdir -p "$r/usr/local/apache2/htdocs"
printf '<html><body><h1>It works!</h1></body></html>\n' > "$r/usr/local/apache2/htdocs/index.html"
cat > "$r/usr/local/bin/httpd-foreground" <<'SH'
#!/bin/sh
# critest stand-in for Apache httpd: busybox httpd on :80; the first log line names "httpd"
echo "httpd stand-in: busybox httpd -f -p 80 -h /usr/local/apache2/htdocs"
exec httpd -f -p 80 -h /usr/local/apache2/htdocs
SH
chmod 0755 "$r/usr/local/bin/httpd-foreground"
commit httpd "httpd stand-in"
config httpd "umoci config" --config.workingdir /usr/local/apache2 --clear config.cmd \
  --config.cmd httpd-foreground --config.exposedports 80/tcp --config.stopsignal SIGTERM
ref httpd e2e-test-images/httpd:2.4.39-4

log "e2e-test-images/nonewprivs:1.3"
from base nonewprivs
install -D -m 4755 -o 0 -g 0 "$WORK/nnp" "$B/rootfs/usr/local/bin/nnp"
commit nonewprivs "nnp, setuid root"
config nonewprivs "umoci config" --config.user 1000 --clear config.cmd --config.cmd /usr/local/bin/nnp
ref nonewprivs e2e-test-images/nonewprivs:1.3

build_cri_tools() {
  local CT=k8s-staging-cri-tools n t
  marker() { # new-tag file: FROM base, ADD an empty /file
    from base "$1"; : > "$B/rootfs/$2"; commit "$1" "ADD $2 /$2"
  }
  for n in test-image-latest test-image-1 test-image-2 test-image-3; do
    marker "$n" "$n"; ref "$n" "$CT/$n:latest"
  done
  marker test-image-tags same-image                       # one image, three tags
  for t in 1 2 3; do ref test-image-tags "$CT/test-image-tags:$t"; done
  marker test-image-tag-test test; ref test-image-tag-test "$CT/test-image-tag:test"
  marker test-image-tag-all all;   ref test-image-tag-all "$CT/test-image-tag:all"
  retag_config base test-image-user-uid "USER 1002" --config.user 1002
  retag_config base test-image-user-username "USER www-data" --config.user www-data
  retag_config base test-image-user-uid-group "USER 1003:1004" --config.user 1003:1004
  retag_config base test-image-user-username-group "USER www-data:1004" --config.user www-data:1004
  for n in test-image-user-uid test-image-user-username test-image-user-uid-group \
           test-image-user-username-group; do ref "$n" "$CT/$n:latest"; done
  from base test-image-predefined-group
  r=$B/rootfs
  echo 'default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh' >> "$r/etc/passwd"
  printf '%s\n' 'default-user:x:1000:' 'group-defined-in-image:x:50000:default-user' >> "$r/etc/group"
  install -d -m 0755 -o 1000 -g 1000 "$r/home/default-user"
  commit test-image-predefined-group "default-user (1000) in group-defined-in-image (50000)"
  config test-image-predefined-group "umoci config" --config.user 1000
  ref test-image-predefined-group "$CT/test-image-predefined-group:latest"
}
log "cri-tools test images"
build_cri_tools

log "pause:3.9"
from scratch pause
r=$B/rootfs
mkdir -p "$r"/{dev,proc,sys,etc}
copy_bin "$(command -v catatonit)" "$r" /pause
printf '%s\n' root:x:0:0:root:/:/pause pause:x:65535:65535:pause:/:/pause > "$r/etc/passwd"
printf '%s\n' root:x:0: pause:x:65535: > "$r/etc/group"
commit pause "catatonit as /pause"
config pause "umoci config" --config.entrypoint /pause --config.entrypoint -P \
  --config.user 65535:65535 --config.stopsignal SIGTERM
ref pause pause:3.9

umoci gc --layout "$L"
for b in "$L"/blobs/sha256/*; do
  [ "$(sha256sum < "$b" | cut -d' ' -f1)" = "$(basename "$b")" ] || die "bad blob $b"
done
printf '%s\n' "${REFS[@]}" > "$L/refs"
echo "$WANT" > "$L/stamp"
rm -rf "$DEST"
mv "$L" "$DEST"
log "built ${#REFS[@]} references into $DEST"
