"""The offline test images: build them (tests/images/build.sh) and push them to a registry.

build.sh leaves one OCI image layout per image, tag ``latest``, under the cache dir
(``$TETHER_TEST_IMAGES``, default /var/cache/tether-test-images). ``push_images`` copies
them with ``skopeo copy --all`` (``multiarch`` goes as an image index) and records the
manifest digest that the registry holds.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.rig.registry import RegistryServer

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "tests" / "images" / "build.sh"
DEFAULT_CACHE = Path("/var/cache/tether-test-images")
IMAGE_NAMES: tuple[str, ...] = ("busybox", "web", "layers", "user", "multiarch", "inserted")
TAG = "latest"


def images_dir() -> Path:
    return Path(os.environ.get("TETHER_TEST_IMAGES") or DEFAULT_CACHE)


def build_images(cache_dir: Path | None = None) -> Path:
    """Run build.sh (a no-op when its cache is current); return the cache dir."""
    cache = cache_dir or images_dir()
    env = dict(os.environ, TETHER_TEST_IMAGES=str(cache))
    res = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], env=env, capture_output=True, text=True, check=False
    )
    if res.returncode != 0:
        raise RuntimeError(
            f"{BUILD_SCRIPT} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
        )
    return cache


def layout_path(name: str, cache_dir: Path | None = None) -> Path:
    """The OCI image layout of image ``name`` (use as ``oci:<path>:latest``)."""
    return (cache_dir or images_dir()) / name


@contextmanager
def _shared_lock(cache: Path) -> Iterator[None]:
    """Keeps build.sh (which takes the lock exclusively) from rebuilding under a push."""
    with open(cache / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclass(frozen=True)
class PushedImage:
    name: str  # repository name in the registry, e.g. "busybox"
    host: str  # "127.0.0.1:5000"
    tag: str
    digest: str  # manifest (or, for multiarch, index) digest: "sha256:..."

    @property
    def ref(self) -> str:
        """``127.0.0.1:5000/busybox:latest``"""
        return f"{self.host}/{self.name}:{self.tag}"

    @property
    def digest_ref(self) -> str:
        """``127.0.0.1:5000/busybox@sha256:...``"""
        return f"{self.host}/{self.name}@{self.digest}"


def push_image(
    host: str,
    name: str,
    *,
    cache_dir: Path | None = None,
    repo: str | None = None,
    tag: str = TAG,
    creds: str | None = None,
    cert_dir: Path | None = None,
) -> PushedImage:
    """Push the layout of image ``name`` to ``host/<repo or name>:tag``. TLS is never
    verified; ``cert_dir`` (``*.cert`` + ``*.key``) gives skopeo a client certificate."""
    cache = cache_dir or images_dir()
    layout = layout_path(name, cache)
    if not (layout / "index.json").is_file():
        raise FileNotFoundError(f"no OCI layout at {layout} (run tests/images/build.sh)")
    dest = f"{host}/{repo or name}:{tag}"
    with tempfile.TemporaryDirectory(prefix="tether-push-") as tmp:
        digestfile = Path(tmp) / "digest"
        cmd = [
            "skopeo", "copy", "--all", "--preserve-digests", "--quiet", "--insecure-policy",
            "--dest-tls-verify=false", "--digestfile", str(digestfile),
        ]
        cmd += ["--dest-creds", creds] if creds else ["--dest-no-creds"]
        if cert_dir is not None:
            cmd += ["--dest-cert-dir", str(cert_dir)]
        cmd += [f"oci:{layout}:{TAG}", f"docker://{dest}"]
        with _shared_lock(cache):
            res = subprocess.run(
                cmd, capture_output=True, text=True, check=False, env=_skopeo_env(tmp)
            )
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stdout}{res.stderr}")
        digest = digestfile.read_text().strip()
    return PushedImage(name=repo or name, host=host, tag=tag, digest=digest)


def push_images(
    host: str,
    *,
    names: Iterable[str] = IMAGE_NAMES,
    cache_dir: Path | None = None,
    creds: str | None = None,
) -> dict[str, PushedImage]:
    return {n: push_image(host, n, cache_dir=cache_dir, creds=creds) for n in names}


def _skopeo_env(tmp: str) -> dict[str, str]:
    # no auth.json or registries.conf of the user's may change what a test sees
    env = dict(os.environ)
    env["REGISTRY_AUTH_FILE"] = str(Path(tmp) / "auth.json")
    env["TMPDIR"] = tmp
    return env


@dataclass
class ImageRegistry:
    """What the ``registry`` fixture yields: a running registry holding the test images."""

    server: RegistryServer
    images: Mapping[str, PushedImage]

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def url(self) -> str:
        return self.server.url

    def ref(self, name: str) -> str:
        """``127.0.0.1:5000/<name>:latest``"""
        return self.images[name].ref

    def digest(self, name: str) -> str:
        """Manifest digest (index digest for ``multiarch``) as the registry has it."""
        return self.images[name].digest

    def digest_ref(self, name: str) -> str:
        """``127.0.0.1:5000/<name>@sha256:...``"""
        return self.images[name].digest_ref
