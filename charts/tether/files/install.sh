#!/bin/sh
# Installs Tether on the node this pod runs on, then keeps the pod alive (a DaemonSet's pod
# must keep running; a config change rolls the DaemonSet and so reruns this).
#
# Runs in the installer pod (hostPID, privileged, the host's / at $HOST): commands that must
# act on the host (apt-get, python3 -m venv, pip, systemctl, tether config) run through
# $HOST_EXEC, which enters PID 1's namespaces; files from the image and the ConfigMap are
# copied to $HOST$path. Every step is idempotent. A config that `tether config` refuses is
# not installed: the running daemon and its old config stay.
#
# Overridable (tests run it against a scratch prefix with HOST= HOST_EXEC= SYSTEMD=false):
set -eu
HOST=${HOST-/host}
HOST_EXEC=${HOST_EXEC-nsenter --target 1 --mount --uts --ipc --net --pid --}
PREFIX=${PREFIX:-/opt/tether}                 # the venv, on the host
ETC=${ETC:-/etc/tether}                       # tether.toml, tether.d/
UNIT_DIR=${UNIT_DIR:-/etc/systemd/system}
CONFIG_SRC=${CONFIG_SRC:-/config}             # the ConfigMap's mount
WHEELS=${WHEELS:-/opt/tether/wheels}          # in the image: Tether's wheel and its deps'
UNIT_SRC=${UNIT_SRC:-/usr/share/tether/tether.service}
INSTALL_PACKAGES=${INSTALL_PACKAGES:-true}
PACKAGES=${PACKAGES:-runc crun conmon catatonit containernetworking-plugins python3-venv}
RESTART=${RESTART:-true}
SYSTEMD=${SYSTEMD:-true}
KEEP_RUNNING=${KEEP_RUNNING:-true}

log() { printf '[tether-install] %s\n' "$*"; }
die() { printf '[tether-install] ERROR: %s\n' "$*" >&2; exit 1; }
on_host() { $HOST_EXEC "$@"; }

changed=false
# install SRC DEST: copies a file onto the host when its contents differ
put() {
  if ! cmp -s "$1" "$HOST$2"; then
    mkdir -p "$(dirname "$HOST$2")"
    cp "$1" "$HOST$2.tether-new" && mv -f "$HOST$2.tether-new" "$HOST$2"
    changed=true
    log "wrote $2"
  fi
}

[ -d "$WHEELS" ] || die "no wheels at $WHEELS (is this the Tether image?)"
[ -r "$CONFIG_SRC/tether.toml" ] || die "no $CONFIG_SRC/tether.toml (the chart's ConfigMap)"

if [ "$INSTALL_PACKAGES" = true ]; then
  log "host packages: $PACKAGES"
  # shellcheck disable=SC2086 # a word list on purpose
  on_host env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $PACKAGES \
    || { on_host apt-get update -q && on_host env DEBIAN_FRONTEND=noninteractive \
           apt-get install -y -q --no-install-recommends $PACKAGES; } \
    || die "apt-get install on the host failed"
fi

# Tether itself: a venv of the host's python3 with the image's wheels. The wheels are staged
# on the host first, since pip runs there.
stage=$PREFIX/wheels
mkdir -p "$HOST$stage"
for w in "$WHEELS"/*.whl; do put "$w" "$stage/$(basename "$w")"; done
[ -x "$HOST$PREFIX/bin/python3" ] || on_host python3 -m venv "$PREFIX" || die "python3 -m venv on the host failed"
if [ "$changed" = true ] || ! [ -x "$HOST$PREFIX/bin/tether" ]; then
  on_host "$PREFIX/bin/pip" install -q --no-index --find-links "$stage" --upgrade tether \
    || die "pip install on the host failed"
  changed=true
fi
log "installed $(on_host "$PREFIX/bin/tether" --version 2>/dev/null || echo tether)"

# Config: validated by the new binary in a scratch dir before it replaces the live one.
check=$PREFIX/config-check
rm -rf "$HOST$check" && mkdir -p "$HOST$check/tether.d"
cp "$CONFIG_SRC/tether.toml" "$HOST$check/tether.toml"
for f in "$CONFIG_SRC"/dropin-*; do
  [ -e "$f" ] || continue
  cp "$f" "$HOST$check/tether.d/$(basename "$f" | sed 's/^dropin-//')"
done
on_host "$PREFIX/bin/tether" config --config "$check/tether.toml" --config-dir "$check/tether.d" >/dev/null \
  || die "tether config refused the chart's config; nothing changed on the node"
put "$HOST$check/tether.toml" "$ETC/tether.toml"
mkdir -p "$HOST$ETC/tether.d"
for f in "$HOST$check"/tether.d/*; do
  [ -e "$f" ] || continue
  put "$f" "$ETC/tether.d/$(basename "$f")"
done
for f in "$HOST$ETC"/tether.d/*.toml; do   # drop-ins removed from values go from the node too
  [ -e "$f" ] || continue
  [ -e "$HOST$check/tether.d/$(basename "$f")" ] || { rm -f "$f"; changed=true; log "removed $ETC/tether.d/$(basename "$f")"; }
done
rm -rf "$HOST$check"

# The unit: the image's, pointed at this venv and config.
unit=$(mktemp)
sed -e "s#^ExecStart=.*#ExecStart=$PREFIX/bin/tether serve --config $ETC/tether.toml --config-dir $ETC/tether.d#" \
  "$UNIT_SRC" > "$unit"
put "$unit" "$UNIT_DIR/tether.service"
rm -f "$unit"

if [ "$SYSTEMD" = true ]; then
  on_host systemctl daemon-reload
  on_host systemctl enable tether.service >/dev/null 2>&1 || die "systemctl enable tether failed"
  if ! on_host systemctl is-active -q tether.service; then
    on_host systemctl start tether.service || die "tether.service did not start (journalctl -u tether)"
    log "started tether.service"
  elif [ "$changed" = true ] && [ "$RESTART" = true ]; then
    # containers outlive this (KillMode=process); the new daemon reconciles them
    on_host systemctl restart tether.service || die "tether.service did not restart (journalctl -u tether)"
    log "restarted tether.service"
  fi
fi
log "installed (changed: $changed)"

if [ "$KEEP_RUNNING" = true ]; then
  trap 'exit 0' TERM INT
  while :; do sleep 3600 & wait $!; done
fi
