"""The chart's installer (charts/tether/files/install.sh) run for real against a scratch
prefix: a venv from a wheelhouse as the image carries it (the dependencies' wheels of
scripts/image-inputs.sh and Tether's own, built from them offline), the ConfigMap's config
checked by Tether before it replaces the live one, drop-ins synced, the systemd unit
rewritten and accepted by `systemd-analyze verify`. On a node it runs the same commands
through nsenter into PID 1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.rig.buildah import InputsMissing, image_inputs
from tests.rig.chart import CHART, REPO_ROOT, render

UNIT = REPO_ROOT / "contrib" / "systemd" / "tether.service"


def configmap(*args: str) -> dict[str, str]:
    docs: list[dict[str, Any]] = json.loads(render("--json", *args))
    return next(d["data"] for d in docs if d["kind"] == "ConfigMap")


def wheelhouse(into: Path) -> Path:
    """The dependencies' wheels and Tether's, built offline (no network in the test netns)."""
    try:
        deps = image_inputs().wheels
    except InputsMissing as e:
        pytest.fail(f"installer: {e}", pytrace=False)
    shutil.copytree(deps, into)
    # built from a copy: setuptools writes build/ and *.egg-info next to the sources
    src = into.parent / "src"
    src.mkdir()
    shutil.copy(REPO_ROOT / "pyproject.toml", src / "pyproject.toml")
    for pkg in ("shim", "podsandbox", "cni", "bench"):
        shutil.copytree(REPO_ROOT / pkg, src / pkg,
                        ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index",
                    "--find-links", str(deps), "-w", str(into), str(src)],
                   capture_output=True, text=True, check=True, timeout=300)
    return into


def install(base: Path, data: dict[str, str], wheels: Path) -> subprocess.CompletedProcess[str]:
    src = base / "configmap"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    for k, v in data.items():
        (src / k).write_text(v)
    env = {**os.environ, "HOST": "", "HOST_EXEC": "", "PREFIX": str(base / "opt/tether"),
           "ETC": str(base / "etc/tether"), "UNIT_DIR": str(base / "systemd"),
           "CONFIG_SRC": str(src), "WHEELS": str(wheels), "UNIT_SRC": str(UNIT),
           "INSTALL_PACKAGES": "false", "SYSTEMD": "false", "KEEP_RUNNING": "false"}
    return subprocess.run(["sh", str(CHART / "files" / "install.sh")], env=env,
                          capture_output=True, text=True, timeout=240, check=False)


def test_installer_installs_checks_config_and_syncs_drop_ins(tmp_path: Path) -> None:
    wheels = wheelhouse(tmp_path / "wheels")
    one = configmap()
    one["dropin-50-log.toml"] = '[logging]\nlevel = "debug"\n'
    res = install(tmp_path, one, wheels)
    assert res.returncode == 0, res.stderr
    assert "installed (changed: true)" in res.stdout
    tether = tmp_path / "opt/tether/bin/tether"
    etc = tmp_path / "etc/tether"
    cfg = subprocess.run([str(tether), "config", "--config", str(etc / "tether.toml"),
                          "--config-dir", str(etc / "tether.d")],
                         capture_output=True, text=True, check=True).stdout
    assert 'level = "debug"' in cfg and 'address = "0.0.0.0"' in cfg
    unit = (tmp_path / "systemd/tether.service").read_text()
    assert (f"ExecStart={tether} serve --config {etc}/tether.toml --config-dir {etc}/tether.d"
            in unit)
    assert "KillMode=process" in unit and "Delegate=yes" in unit
    verify = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "systemd/tether.service")],
                            capture_output=True, text=True, check=False)
    assert verify.returncode == 0, verify.stderr

    # the same ConfigMap again: nothing to do
    res = install(tmp_path, one, wheels)
    assert res.returncode == 0 and "installed (changed: false)" in res.stdout, res.stdout

    # a drop-in gone from the values goes from the node
    del one["dropin-50-log.toml"]
    res = install(tmp_path, one, wheels)
    assert res.returncode == 0 and "removed" in res.stdout, res.stdout
    assert list((etc / "tether.d").iterdir()) == []

    # a config Tether refuses changes nothing
    before = (etc / "tether.toml").read_text()
    bad = dict(one, **{"tether.toml": one["tether.toml"] + "\n[nonsense]\nkey = 1\n"})
    res = install(tmp_path, bad, wheels)
    assert res.returncode != 0 and "nothing changed on the node" in res.stderr, res.stderr
    assert (etc / "tether.toml").read_text() == before
