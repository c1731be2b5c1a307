"""Tether runs its own image: the repository's Dockerfile built by buildah (rootful, vfs
storage in the test's own directory, no Docker daemon, offline: see tests/rig/buildah.py
and scripts/image-inputs.sh), pushed to the test registry, then pulled by a Tether daemon
through crictl and run as containers whose output crictl logs shows, the chart's installer
among them.

buildah comes from Debian (scripts/install-deps.sh), crictl from $CRICTL, PATH or
../shared/tools/bin; without either, or without the cached image inputs, these tests say so
in one line (and fail under CI=true)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

from shim.version import RUNTIME_VERSION
from tests.e2e.test_crictl import Crictl
from tests.rig import buildah as b
from tests.rig.critest import require_tool
from tests.rig.node import start_node
from tests.rig.registry import RegistryServer, http_get

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALLER = REPO_ROOT / "charts" / "tether" / "files" / "install.sh"
REPOSITORY = "tether/node"
TAG = "test"
MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json, "
                  "application/vnd.docker.distribution.manifest.v2+json")


def _missing(msg: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


@dataclass(frozen=True)
class Pushed:
    registry: RegistryServer
    ref: str      # host/repository:tag
    digest: str   # the manifest digest the push reported
    seconds: dict[str, float]


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushed]:
    binary = require_tool("buildah")
    try:
        inputs = b.image_inputs()
    except b.InputsMissing as e:
        _missing(str(e))
    base = tmp_path_factory.mktemp("image")
    builder = b.Buildah(binary, base / "buildah")
    seconds: dict[str, float] = {}
    try:
        t0 = time.monotonic()
        builder.import_rootfs(inputs.base_tar, b.BASE_IMAGE)
        seconds["base import"] = time.monotonic() - t0
        t0 = time.monotonic()
        volumes = b.build_volumes(inputs, b.local_apt_sources(base / "apt-sources"))
        before = sorted(p.name for p in REPO_ROOT.iterdir())
        builder.bud(REPO_ROOT, "localhost/tether:test", b.build_args(), volumes)
        seconds["build"] = time.monotonic() - t0
        # the build context is read, never written (no build/ or *.egg-info left behind)
        assert sorted(p.name for p in REPO_ROOT.iterdir()) == before
        with RegistryServer(base / "registry", port=0) as registry:
            ref = f"{registry.host}/{REPOSITORY}:{TAG}"
            t0 = time.monotonic()
            digest = builder.push("localhost/tether:test", ref)
            seconds["push"] = time.monotonic() - t0
            # the image lives in the registry now; buildah's copy is not needed any more
            builder.cleanup()
            yield Pushed(registry, ref, digest, seconds)
    finally:
        builder.cleanup()
        print(f"\n[image] {', '.join(f'{k} {v:.0f}s' for k, v in seconds.items())}",
              file=sys.stderr)


@pytest.fixture(scope="module")
def crictl(pushed: Pushed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Crictl]:
    binary = require_tool("crictl")
    base = tmp_path_factory.mktemp("image-node")
    node = start_node(base, pushed.registry, bridge="e2eimage0", subnet="10.91.2.0/24")
    work = base / "work"
    work.mkdir()
    c = Crictl(binary, node, base / "crictl.yaml", work)
    c.config.write_text("")
    try:
        yield c
    finally:
        node.stop()


def test_the_pushed_image_is_in_the_registry(pushed: Pushed) -> None:
    resp = http_get(f"{pushed.registry.url}/v2/{REPOSITORY}/manifests/{TAG}",
                    accept=MANIFEST_TYPES)
    assert resp.status == 200
    assert resp.headers.get("Docker-Content-Digest") == pushed.digest
    manifest = json.loads(resp.body)
    assert len(manifest["layers"]) >= 2  # the base, then what the Dockerfile added


def _run_to_exit(crictl: Crictl, sid: str, pod: str, name: str, image: str,
                 **process: Any) -> tuple[int, str]:
    """Create and start a container with ``command``/``args``/``envs``/``mounts`` as given;
    its exit code and logs."""
    doc = {"metadata": {"name": name, "attempt": 0}, "image": {"image": image},
           "log_path": f"{name}/0.log", "linux": {}, **process}
    cid = crictl.out("create", sid, crictl.write(f"ctr-{name}.json", doc), pod).strip()
    crictl.run("start", cid)
    deadline = time.monotonic() + 60
    while (status := crictl.json("inspect", cid)["status"])["state"] != "CONTAINER_EXITED":
        assert time.monotonic() < deadline, f"{name} still {status['state']}"
        time.sleep(0.2)
    logs = crictl.run("logs", cid)
    return int(status.get("exitCode", 0)), logs.stdout + logs.stderr


def test_tether_pulls_and_runs_its_own_image(pushed: Pushed, crictl: Crictl) -> None:
    # a ~300 MB image: more than crictl's usual 30 s may be needed on a busy machine
    out = crictl.run("--timeout", "300s", "pull", pushed.ref, timeout=330).stdout
    assert out.startswith("Image is up to date for sha256:"), out
    doc = crictl.json("inspecti", pushed.ref)
    assert doc["status"]["repoDigests"] == [
        f"{pushed.ref.rsplit(':', 1)[0]}@{pushed.digest}"]
    config = doc["info"]["imageSpec"]["config"]
    assert config["Entrypoint"] == ["tether"] and config["Cmd"] == ["serve"]

    pod = crictl.pod_config("image")
    sid = crictl.out("runp", pod).strip()
    # args only: the image's ENTRYPOINT (tether) runs them
    code, logs = _run_to_exit(crictl, sid, pod, "version", pushed.ref, args=["--version"])
    assert (code, logs) == (0, f"tether {RUNTIME_VERSION}\n")
    code, logs = _run_to_exit(crictl, sid, pod, "config", pushed.ref, args=["config"])
    assert code == 0, logs
    for line in ('path = "/usr/sbin/runc"', 'path = "/usr/bin/crun"',
                 'conmon = "/usr/bin/conmon"', 'pause_holder = "/usr/bin/catatonit"',
                 'listen = "/run/tether/tether.sock"'):
        assert line in logs.splitlines(), logs
    # what that config names is in the image, and runs
    code, logs = _run_to_exit(
        crictl, sid, pod, "tools", pushed.ref, command=["/bin/sh", "-c",
        "runc --version && crun --version && conmon --version && catatonit --version"
        " && zstd --version && iptables --version && unshare --version"
        " && test ! -e /src && ls /opt/tether/wheels /usr/lib/cni"])
    assert code == 0, logs
    for word in ("runc version", "crun version", "conmon version", "catatonit", "Zstandard CLI",
                 "iptables v", "unshare from util-linux", "bridge",
                 "host-local", "portmap", "loopback", f"tether-{RUNTIME_VERSION}-py3"):
        assert word in logs, logs

    # the chart's installer, run in this image against a scratch prefix in the container (on a
    # node it acts on the host through nsenter): the image carries what it installs from
    config = crictl.work / "installer-config"
    config.mkdir()
    shutil.copy(INSTALLER, config / "install.sh")
    (config / "tether.toml").write_text('[logging]\nlevel = "debug"\n')
    env = {"HOST": "", "HOST_EXEC": "", "PREFIX": "/tmp/host/opt/tether",
           "ETC": "/tmp/host/etc/tether", "UNIT_DIR": "/tmp/host/systemd",
           "INSTALL_PACKAGES": "false", "SYSTEMD": "false", "KEEP_RUNNING": "false"}
    code, logs = _run_to_exit(
        crictl, sid, pod, "installer", pushed.ref,
        command=["/bin/sh", "-c", "sh /config/install.sh && "
                 "grep -x 'ExecStart=/tmp/host/opt/tether/bin/tether serve --config "
                 "/tmp/host/etc/tether/tether.toml --config-dir /tmp/host/etc/tether/tether.d' "
                 "/tmp/host/systemd/tether.service"],
        envs=[{"key": k, "value": v} for k, v in env.items()],
        mounts=[{"container_path": "/config", "host_path": str(config), "readonly": True}])
    assert code == 0, logs
    assert f"[tether-install] installed tether {RUNTIME_VERSION}" in logs, logs
    assert "[tether-install] installed (changed: true)" in logs, logs
    crictl.run("rmp", "-f", sid)
