#!/usr/bin/env bash
# scripts/run.sh [tether serve flags...] — install what Tether needs and run the daemon with
# its defaults (`make run` runs this). Like CRI-O, it installs a default bridge network
# (contrib/cni/10-tether-bridge.conflist: bridge tether0, host-local 10.85.0.0/16, portmap,
# loopback) only when the CNI conf dir has no network config at all.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${TETHER_VENV:-$REPO/.venv}
CNI_CONF_DIR=${TETHER_CNI_CONF_DIR:-/etc/cni/net.d}

bash "$REPO/scripts/install-deps.sh"

mkdir -p "$CNI_CONF_DIR"
if ! compgen -G "$CNI_CONF_DIR/*.conflist" >/dev/null && ! compgen -G "$CNI_CONF_DIR/*.conf" \
   >/dev/null && ! compgen -G "$CNI_CONF_DIR/*.json" >/dev/null; then
  install -m 0644 "$REPO/contrib/cni/10-tether-bridge.conflist" "$CNI_CONF_DIR/"
  echo "[run] installed the default CNI network in $CNI_CONF_DIR/10-tether-bridge.conflist"
fi

exec "$VENV/bin/tether" serve --cni-conf-dir "$CNI_CONF_DIR" "$@"
