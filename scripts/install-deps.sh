#!/usr/bin/env bash
# scripts/install-deps.sh — everything Tether's build and tests need on a Debian 12 machine.
#
# Idempotent; run as root. Steps:
#   1. Debian packages (skipped entirely when dpkg already has every one of them).
#      Maintainer scripts are kept from starting services (policy-rc.d exiting 101 for
#      the duration of the install), and the services the packages enable
#      (docker-registry, containerd) are disabled again: tests start what they need.
#   2. The Python venv ($TETHER_VENV, default <repo>/.venv, created with the python3
#      that is first on PATH, or $PYTHON) and `pip install -e '.[test]'` (skipped when
#      pyproject.toml and the interpreter are unchanged since the last successful install;
#      TETHER_FORCE_PIP=1 forces it).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${TETHER_VENV:-$REPO/.venv}
PYTHON=${PYTHON:-python3}

PKGS=(
  runc crun conmon containernetworking-plugins catatonit   # runtimes, CNI, pause
  skopeo umoci docker-registry busybox-static               # test images and registry
  apache2-utils                                             # htpasswd (bcrypt) for registry auth tests
  iproute2 iptables util-linux containerd                   # netns/veth, nsenter/unshare, reference runtime
  python3 python3-venv zstd jq curl socat file make        # venv, zstd layers, tools
  gcc libc6-dev procps                                      # critest stand-in images (static C, pgrep)
  prometheus systemd                                        # a real scrape; systemd-analyze verify
  etcd-server openssl                                       # the kubelet stage's control plane
  golang-go golang-github-masterminds-sprig-dev             # tools/chart-render: the Helm chart
  golang-gopkg-yaml.v3-dev golang-github-burntsushi-toml-dev #   rendered as helm does (no helm here)
  buildah mmdebstrap dpkg-dev                               # the Dockerfile, built offline
)
# units shipped by the packages above that must never run on their own
UNITS=(docker-registry.service containerd.service prometheus.service etcd.service)

log() { printf '[install-deps] %s\n' "$*"; }
die() { printf '[install-deps] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (apt-get and the integration tests need it)"

# ------------------------------------------------------------------ Debian packages
missing=()
for p in "${PKGS[@]}"; do
  st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$st" = installed ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  log "Debian packages: all ${#PKGS[@]} already installed"
else
  log "Debian packages to install: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  POLICY=/usr/sbin/policy-rc.d
  backup=""
  if [ -e "$POLICY" ]; then
    backup=$(mktemp /usr/sbin/.policy-rc.d.tether.XXXXXX)
    cp -a "$POLICY" "$backup"
  fi
  restore_policy() {
    if [ -n "$backup" ]; then mv -f "$backup" "$POLICY"; else rm -f "$POLICY"; fi
  }
  trap restore_policy EXIT
  printf '#!/bin/sh\n# written by tether scripts/install-deps.sh: start no service\nexit 101\n' > "$POLICY"
  chmod 0755 "$POLICY"

  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"

  restore_policy
  trap - EXIT

  for p in "${missing[@]}"; do
    log "installed $(dpkg-query -W -f='${Package} ${Version}' "$p")"
  done
fi

# Services the packages enabled: turn them off (cheap and idempotent, so always checked).
for u in "${UNITS[@]}"; do
  if command -v systemctl >/dev/null 2>&1 \
     && [ "$(systemctl is-enabled "$u" 2>/dev/null || true)" = enabled ]; then
    systemctl disable "$u" >/dev/null 2>&1 && log "disabled $u" || true
  fi
  rm -f "/etc/systemd/system/multi-user.target.wants/$u"
  svc=${u%.service}
  if [ -x "/etc/init.d/$svc" ] && ls /etc/rc[2-5].d/S*"$svc" >/dev/null 2>&1; then
    update-rc.d "$svc" disable >/dev/null 2>&1 && log "disabled sysv $svc" || true
  fi
done

# ------------------------------------------------------------------ Python venv
command -v "$PYTHON" >/dev/null 2>&1 || die "no $PYTHON on PATH"
if [ ! -x "$VENV/bin/python" ]; then
  log "creating venv $VENV with $(command -v "$PYTHON") ($("$PYTHON" --version 2>&1))"
  "$PYTHON" -m venv "$VENV"
fi

STAMP=$VENV/.tether-deps-stamp
want=$( { cat "$REPO/pyproject.toml"; "$VENV/bin/python" -VV; echo "$REPO"; } | sha256sum | cut -d' ' -f1)
if [ "${TETHER_FORCE_PIP:-0}" != 1 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] \
   && "$VENV/bin/python" -c 'import shim' >/dev/null 2>&1; then
  log "venv $VENV up to date with pyproject.toml"
else
  log "pip install -e '.[test]' into $VENV"
  rm -f "$STAMP"
  before=$("$VENV/bin/python" -m pip freeze --all 2>/dev/null | sort || true)
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$REPO[test]"
  after=$("$VENV/bin/python" -m pip freeze --all 2>/dev/null | sort)
  changed=$(comm -13 <(printf '%s\n' "$before") <(printf '%s\n' "$after") | grep -Ev '^(-e |#)' || true)
  if [ -n "$changed" ]; then
    log "python packages installed/updated:"; printf '%s\n' "$changed" | sed 's/^/  /'
  else
    log "python packages: nothing new"
  fi
  echo "$want" > "$STAMP"
fi
log "done"
