"""Fixtures of the image service tests: a daemon per test with registry settings, helpers to
call the ImageService, read metrics, and check that nothing is left mounted.

Import the fixtures into a test module with ``from tests.integration.images_fixtures import *``
(pytest finds them by name) or by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import secrets
import socket
import subprocess
import tarfile
import tempfile
import threading
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import tomli_w

from shim.cri import api_pb2 as pb
from shim.images import snapshots
from tests.rig.daemon import CRIClient, TetherDaemon
from tests.rig.images import ImageRegistry, PushedImage, push_image
from tests.rig.tokengate import TokenGate

__all__ = [
    "ImageDaemon",
    "RegistryProxy",
    "docker_hub_mirror",
    "extra_images",
    "image_daemon",
    "mounts_under",
    "registry_proxy",
    "rootfs_of",
    "start_image_daemon",
]

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def mounts_under(path: Path) -> list[str]:
    return snapshots.mounts_under(os.fspath(path))


@dataclass
class ImageDaemon:
    daemon: TetherDaemon
    client: CRIClient
    mounted: list[Path] = field(default_factory=list)

    @property
    def images_dir(self) -> Path:
        return self.daemon.root / "images"

    @property
    def snapshots_dir(self) -> Path:
        return self.images_dir / "snapshots"

    @property
    def blobs_dir(self) -> Path:
        return self.images_dir / "blobs" / "sha256"

    def pull(self, image: str, auth: pb.AuthConfig | None = None, timeout: float = 120) -> str:
        req = pb.PullImageRequest(image=pb.ImageSpec(image=image))
        if auth is not None:
            req.auth.CopyFrom(auth)
        return str(self.client.images.PullImage(req, timeout=timeout).image_ref)

    def pull_error(self, image: str, auth: pb.AuthConfig | None = None,
                   timeout: float = 120) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as exc:
            self.pull(image, auth, timeout)
        return exc.value

    def status(self, image: str, verbose: bool = False) -> pb.ImageStatusResponse:
        return self.client.images.ImageStatus(
            pb.ImageStatusRequest(image=pb.ImageSpec(image=image), verbose=verbose), timeout=10
        )

    def list(self, image: str = "") -> list[pb.Image]:
        req = pb.ListImagesRequest()
        if image:
            req.filter.image.image = image
        return list(self.client.images.ListImages(req, timeout=10).images)

    def remove(self, image: str) -> None:
        self.client.images.RemoveImage(
            pb.RemoveImageRequest(image=pb.ImageSpec(image=image)), timeout=30
        )

    def fs_info(self) -> pb.ImageFsInfoResponse:
        return self.client.images.ImageFsInfo(pb.ImageFsInfoRequest(), timeout=30)

    def metrics_text(self) -> str:
        url = f"http://127.0.0.1:{self.daemon.metrics_port}/metrics"
        with _OPENER.open(url, timeout=10) as r:
            return str(r.read().decode())

    def metric(self, name: str, **labels: str) -> float:
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        pat = re.compile(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$")
        total = 0.0
        for line in self.metrics_text().splitlines():
            m = pat.match(line)
            if m and (not want or (m.group(1) or "") == want):
                total += float(m.group(2))
        return total

    def stop(self) -> None:
        self.client.close()
        self.daemon.stop()


def daemon_config(
    *,
    insecure: list[str] | None = None,
    mirrors: dict[str, list[str]] | None = None,
    registries_conf: str = "",
    registries_conf_dir: str = "",
    auth_file: str = "",
    pause_image: str = "",
    progress_timeout: float | None = None,
    certs_dirs: list[str] | None = None,
) -> str:
    images: dict[str, object] = {}
    if insecure:
        images["insecure_registries"] = insecure
    if mirrors:
        images["mirrors"] = mirrors
    if registries_conf:
        images["registries_conf"] = registries_conf
    if registries_conf_dir:
        images["registries_conf_dir"] = registries_conf_dir
    if auth_file:
        images["auth_file"] = auth_file
    if pause_image:
        images["pause_image"] = pause_image
    if progress_timeout is not None:
        images["pull_progress_timeout_seconds"] = progress_timeout
    if certs_dirs is not None:
        images["certs_dirs"] = certs_dirs
    return tomli_w.dumps({"images": images})


StartDaemon = Callable[..., ImageDaemon]



@pytest.fixture
def start_image_daemon(tmp_path: Path) -> Iterator[StartDaemon]:
    """``start_image_daemon(config_text, name="d")``: a running tether with its own dirs.

    Afterwards: daemons stopped, rootfs mounts the test made unmounted, and the test fails
    if any mount under its tmp dir was left.
    """
    started: list[ImageDaemon] = []

    def start(config_text: str = "", name: str = "d", base: Path | None = None,
              env: dict[str, str] | None = None) -> ImageDaemon:
        d = TetherDaemon(base or tmp_path / name, config_text=config_text, env=env or {})
        d.start()
        img = ImageDaemon(d, d.client())
        started.append(img)
        return img

    yield start
    for img in started:
        img.stop()
    left = mounts_under(tmp_path)
    for mp in sorted(left, key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], check=False)
    assert not left, f"mounts left behind: {left}"


@pytest.fixture
def image_daemon(registry: ImageRegistry, start_image_daemon: StartDaemon) -> ImageDaemon:
    """A daemon that treats the test registry as insecure (it speaks plain HTTP)."""
    return start_image_daemon(daemon_config(insecure=[registry.host]))


@pytest.fixture(scope="session")
def docker_hub_mirror(registry: ImageRegistry, test_images: Path) -> PushedImage:
    """busybox also as ``library/busybox`` on the test registry, to mirror docker.io."""
    return push_image(registry.host, "busybox", cache_dir=test_images, repo="library/busybox")


@contextlib.contextmanager
def rootfs_of(img_daemon: ImageDaemon, image_id: str, container_dir: Path) -> Iterator[Path]:
    """The image's overlay rootfs, mounted by ImageManager.mount_rootfs in this process over
    the daemon's root dir (the daemon is stopped for it: one process owns a store)."""
    from shim import config as configmod
    from shim.images import ImageManager
    from shim.store import Store

    img_daemon.stop()
    cfg = configmod.Config()
    cfg.paths.root = os.fspath(img_daemon.daemon.root)
    cfg.paths.run = os.fspath(img_daemon.daemon.run_dir)
    store = Store(os.path.join(cfg.paths.root, "tether.db"))
    mgr = ImageManager(cfg, store, in_use=lambda img: None)  # only mounts
    try:
        rootfs = asyncio.run(mgr.mount_rootfs(image_id, os.fspath(container_dir)))
        try:
            yield Path(rootfs)
        finally:
            asyncio.run(mgr.unmount_rootfs(os.fspath(container_dir)))
    finally:
        store.close()


class RegistryProxy:
    """A TCP proxy in front of a registry that logs HTTP request lines and, when ``stall`` is
    set, stops passing data back after a blob request (a registry that hangs mid-download).

    Runs in threads of the test process; ``close()`` ends them.
    """

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.requests: list[str] = []
        self.stall = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.host = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def blob_requests(self, digest: str | None = None) -> list[str]:
        with self._lock:
            return [r for r in self.requests
                    if r.startswith("GET ") and "/blobs/" in r and (not digest or digest in r)]

    def _track(self, s: socket.socket) -> None:
        with self._lock:
            self._socks.append(s)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(self.upstream, timeout=10)
                up.settimeout(None)
            except OSError:
                client.close()
                continue
            self._track(client)
            self._track(up)
            state = {"blob": False}
            for args in ((client, up, True, state), (up, client, False, state)):
                t = threading.Thread(target=self._pump, args=args, daemon=True)
                t.start()
                self._threads.append(t)

    def _pump(self, src: socket.socket, dst: socket.socket, requests: bool,
              state: dict[str, bool]) -> None:
        pending = b""
        try:
            while not self._closed.is_set():
                data = src.recv(65536)
                if not data:
                    break
                if requests:
                    pending += data
                    while b"\r\n" in pending:
                        line, pending = pending.split(b"\r\n", 1)
                        text = line.decode(errors="replace")
                        if text.split(" ", 1)[0] in ("GET", "HEAD", "POST", "PUT", "PATCH"):
                            with self._lock:
                                self.requests.append(text)
                            if "/blobs/" in text and text.startswith("GET"):
                                state["blob"] = True
                elif self.stall.is_set() and state["blob"]:
                    dst.sendall(data[:100])
                    self._closed.wait()  # hang: the download makes no progress
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self.listener.close()
        with self._lock:
            for s in self._socks:
                with contextlib.suppress(OSError):
                    s.close()
        for t in self._threads:
            t.join(5)


@pytest.fixture
def registry_proxy(registry: ImageRegistry) -> Iterator[RegistryProxy]:
    proxy = RegistryProxy(registry.host)
    yield proxy
    proxy.close()


@pytest.fixture(scope="session")
def extra_images(registry: ImageRegistry, test_images: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """More images on the test registry: busybox as Docker schema 2 (``bbs2``) and under a
    second name (``bb-other``); a layer zoo as zstd (``zoo-zstd``) and plain tar
    (``zoo-plain``). Values: references."""
    from tests.integration import malicious_layers as ml

    host = registry.host
    out: dict[str, str] = {}
    src = f"oci:{test_images / 'busybox'}:latest"
    with tempfile.TemporaryDirectory() as tmp:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": tmp, "TMPDIR": tmp,
               "REGISTRY_AUTH_FILE": f"{tmp}/auth.json"}
        subprocess.run(
            ["skopeo", "copy", "--quiet", "--insecure-policy", "--dest-tls-verify=false",
             "--format", "v2s2", src, f"docker://{host}/bbs2:latest"],
            check=True, env=env, capture_output=True,
        )
    out["bbs2"] = f"{host}/bbs2:latest"
    out["bb-other"] = push_image(host, "busybox", cache_dir=test_images, repo="bb-other").ref
    work = tmp_path_factory.mktemp("zoo")
    for compress in ("zstd", "plain"):
        layout = work / compress
        ml.write_layout(layout, [ml.layer_tar(zoo_entries())], compress=compress)
        ref = f"{host}/zoo-{compress}:latest"
        ml.push_layout(layout, ref)
        out[f"zoo-{compress}"] = ref
    return out


ZOO_MTIME = 1600000000


def zoo_entries() -> list[Callable[[tarfile.TarFile], None]]:
    """A layer with each kind of entry and attribute an unpacker must keep."""

    def add(tar: tarfile.TarFile) -> None:
        def ti(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, uid: int = 0,
               gid: int = 0, data: bytes = b"", **kw: object) -> None:
            t = tarfile.TarInfo(name)
            t.type, t.mode, t.uid, t.gid, t.mtime = kind, mode, uid, gid, ZOO_MTIME
            for k, v in kw.items():
                setattr(t, k, v)
            t.size = len(data)
            tar.addfile(t, io.BytesIO(data) if data else None)

        ti("bin", tarfile.DIRTYPE, 0o755)
        ti("bin/suid", mode=0o4755, data=b"#!/bin/sh\n")
        ti("bin/sgid", mode=0o2711, uid=1000, gid=50, data=b"x")
        ti("bin/hard", tarfile.LNKTYPE, linkname="bin/suid")
        ti("bin/sym", tarfile.SYMTYPE, linkname="suid")
        ti("bin/dangling", tarfile.SYMTYPE, linkname="/nonexistent/target")
        ti("dev", tarfile.DIRTYPE, 0o755)
        ti("dev/null", tarfile.CHRTYPE, 0o666, devmajor=1, devminor=3)
        ti("dev/loop9", tarfile.BLKTYPE, 0o660, gid=6, devmajor=7, devminor=9)
        ti("dev/fifo", tarfile.FIFOTYPE, 0o600)
        ti("home", tarfile.DIRTYPE, 0o755)
        ti("home/alice", tarfile.DIRTYPE, 0o700, uid=1000, gid=1000)
        ti("home/alice/note", mode=0o600, uid=1000, gid=1000, data=b"alice\n",
           pax_headers={"SCHILY.xattr.user.tether": "zoo"})
        ti("sticky", tarfile.DIRTYPE, 0o1777)

    return [add]


# ---------------------------------------------------------------- token-auth registry front

GATE_USER, GATE_PASSWORD = "alice", "pw-Zq81-never-logged"


@pytest.fixture
def token_gate(registry: ImageRegistry) -> Iterator[TokenGate]:
    """A ``tests.rig.tokengate.TokenGate`` in front of the session ``registry``: Bearer token
    auth (realm ``<gate.url>/token``, service "tether-gate") with user ``GATE_USER`` /
    ``GATE_PASSWORD``, an identity (refresh) token ``.identity_token`` and a pre-shared
    ``.registry_token`` (both random per test, both acting as alice). Images:
    ``gate.ref("busybox")``; more users: ``gate.add_user(name, pw, repos=[...])``; what it saw:
    ``.requests``, ``.token_requests``; every secret: ``.secrets()``. Closed after the test."""
    gate = TokenGate(
        registry.host,
        users={GATE_USER: GATE_PASSWORD},
        identity_token="idt-" + secrets.token_hex(20),
        registry_token="rgt-" + secrets.token_hex(20),
    )
    try:
        yield gate
    finally:
        gate.close()


__all__ += ["GATE_PASSWORD", "GATE_USER", "token_gate"]
