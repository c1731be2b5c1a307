"""charts/tether rendered for tests: tools/chart-render (Go's text/template + sprig, as helm
uses), built from Debian's Go packages into a cache dir keyed by its source."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "tether"
RENDER_SRC = REPO_ROOT / "tools" / "chart-render" / "main.go"
CACHE = Path(os.environ.get("TETHER_TEST_IMAGES", "/var/cache/tether-test-images")) / "chart-render"
# Debian 12: golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v3-dev
# golang-github-burntsushi-toml-dev (scripts/install-deps.sh)
GOPATH = "/usr/share/gocode"


class RenderError(Exception):
    pass


def renderer() -> Path:
    """The chart-render binary, built once per version of its source."""
    if shutil.which("go") is None:
        raise RenderError("go not found (apt-get install golang-go; scripts/install-deps.sh)")
    key = hashlib.sha256(RENDER_SRC.read_bytes()).hexdigest()[:16]
    out = CACHE / f"chart-render-{key}"
    if not out.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".tmp{os.getpid()}")
        env = {**os.environ, "GO111MODULE": "off", "GOPATH": GOPATH, "GOFLAGS": "",
               "GOCACHE": str(CACHE / "gocache")}
        res = subprocess.run(["go", "build", "-o", str(tmp), str(RENDER_SRC)], env=env,
                             capture_output=True, text=True, timeout=300, check=False)
        if res.returncode != 0:
            raise RenderError(f"go build tools/chart-render: {res.stderr}")
        tmp.rename(out)
    return out


def render(*args: str, chart: Path = CHART) -> str:
    """`helm template`'s output for ``args`` (--name, --namespace, -f, --set)."""
    res = subprocess.run([str(renderer()), *args, str(chart)], capture_output=True, text=True,
                         timeout=60, check=False)
    if res.returncode != 0:
        raise RenderError(res.stderr.strip())
    return res.stdout


def documents(rendered: str) -> dict[str, list[str]]:
    """Rendered YAML documents by template file name (runtimeclass.yaml: [doc, doc])."""
    out: dict[str, list[str]] = {}
    for chunk in rendered.split("---\n# Source: ")[1:]:
        source, _, body = chunk.partition("\n")
        out.setdefault(source.rsplit("/", 1)[-1], []).append(body)
    return out


def kinds(rendered: str) -> list[str]:
    return re.findall(r"(?m)^kind: (\w+)$", rendered)
