"""A corpus of hostile layer tarballs, built with tarfile, packed as OCI images and pushed.

Each image has a harmless first layer and a hostile second one, so a test can check that a
refused pull leaves nothing behind, not even the layer that was fine. ``target`` is a
directory outside any snapshot the hostile entries aim at: after the pull it must still be
empty.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

Entry = Callable[[tarfile.TarFile], None]


def _file(name: str, data: bytes = b"pwned\n", mode: int = 0o644) -> Entry:
    def add(tar: tarfile.TarFile) -> None:
        ti = tarfile.TarInfo(name)
        ti.size = len(data)
        ti.mode = mode
        ti.mtime = 1704067200
        tar.addfile(ti, io.BytesIO(data))

    return add


def _link(name: str, target: str, kind: bytes) -> Entry:
    def add(tar: tarfile.TarFile) -> None:
        ti = tarfile.TarInfo(name)
        ti.type = kind
        ti.linkname = target
        ti.mtime = 1704067200
        tar.addfile(ti)

    return add


def _dir(name: str) -> Entry:
    def add(tar: tarfile.TarFile) -> None:
        ti = tarfile.TarInfo(name)
        ti.type = tarfile.DIRTYPE
        ti.mode = 0o755
        tar.addfile(ti)

    return add


def _chardev(name: str, major: int = 1, minor: int = 3) -> Entry:
    def add(tar: tarfile.TarFile) -> None:
        ti = tarfile.TarInfo(name)
        ti.type = tarfile.CHRTYPE
        ti.devmajor, ti.devminor = major, minor
        ti.mode = 0o666
        tar.addfile(ti)

    return add


@dataclass(frozen=True)
class Case:
    name: str
    entry: str  # the entry the error must name
    entries: tuple[Entry, ...]


def cases(target: Path) -> list[Case]:
    """The hostile layers; absolute paths aim into ``target``."""
    t = str(target).lstrip("/")
    up = "../" * 12
    return [
        Case("dotdot", f"{up}{t}/escape.txt", (_file(f"{up}{t}/escape.txt"),)),
        Case("dotdot-nested", f"etc/../{up}{t}/escape.txt",
             (_file(f"etc/../{up}{t}/escape.txt"),)),
        Case("absolute", f"/{t}/abs.txt", (_file(f"/{t}/abs.txt"),)),
        Case("symlink-write-through", "evil/pwned.txt",
             (_link("evil", f"/{t}", tarfile.SYMTYPE), _file("evil/pwned.txt"))),
        Case("symlink-relative-write-through", "up/" + t + "/pwned.txt",
             (_link("up", up.rstrip("/"), tarfile.SYMTYPE), _file(f"up/{t}/pwned.txt"))),
        Case("symlink-dir-then-file", "d/link/pwned.txt",
             (_dir("d"), _link("d/link", f"/{t}", tarfile.SYMTYPE),
              _file("d/link/pwned.txt"))),
        Case("hardlink-outside", "passwd-link",
             (_link("passwd-link", f"{up}etc/passwd", tarfile.LNKTYPE),)),
        Case("hardlink-absolute", "shadow-link",
             (_link("shadow-link", "/etc/shadow", tarfile.LNKTYPE),)),
        Case("hardlink-through-symlink", "hl",
             (_link("s", "/etc", tarfile.SYMTYPE), _link("hl", "s/passwd", tarfile.LNKTYPE))),
        Case("device-outside", f"{up}{t}/null", (_chardev(f"{up}{t}/null"),)),
        Case("device-through-symlink", "dev/null",
             (_link("dev", f"/{t}", tarfile.SYMTYPE), _chardev("dev/null"))),
        Case("whiteout-dotdot", "etc/.wh..", (_dir("etc"), _file("etc/.wh.."))),
    ]


def layer_tar(entries: tuple[Entry, ...] | list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for add in entries:
            add(tar)
    return buf.getvalue()


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_layout(layout: Path, layers: list[bytes], compress: str = "gzip") -> dict[str, str]:
    """An OCI image layout (tag ``latest``) with these uncompressed layer tars.

    Returns the digests: ``manifest``, ``config`` and ``layer0``, ``layer1``, ...
    """
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> str:
        d = _sha(data)
        (blobs / d.split(":")[1]).write_bytes(data)
        return d

    out: dict[str, str] = {}
    descs = []
    for i, tar in enumerate(layers):
        if compress == "gzip":
            blob = gzip.compress(tar, mtime=0)
            mt = "application/vnd.oci.image.layer.v1.tar+gzip"
        elif compress == "zstd":
            blob = subprocess.run(["zstd", "-q", "-c"], input=tar, capture_output=True,
                                  check=True).stdout
            mt = "application/vnd.oci.image.layer.v1.tar+zstd"
        else:
            blob = tar
            mt = "application/vnd.oci.image.layer.v1.tar"
        out[f"layer{i}"] = put(blob)
        descs.append({"mediaType": mt, "digest": out[f"layer{i}"], "size": len(blob)})
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [_sha(t) for t in layers]},
    }).encode()
    out["config"] = put(config)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": out["config"], "size": len(config)},
        "layers": descs,
    }).encode()
    out["manifest"] = put(manifest)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text(json.dumps({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": out["manifest"], "size": len(manifest),
                       "annotations": {"org.opencontainers.image.ref.name": "latest"}}],
    }))
    return out


def push_layout(layout: Path, dest: str, creds: str | None = None) -> None:
    """skopeo copy ``oci:layout:latest`` to ``docker://dest`` (plain HTTP registry)."""
    with tempfile.TemporaryDirectory(prefix="tether-push-") as tmp:
        cmd = ["skopeo", "copy", "--quiet", "--insecure-policy", "--preserve-digests",
               "--dest-tls-verify=false"]
        cmd += ["--dest-creds", creds] if creds else ["--dest-no-creds"]
        cmd += [f"oci:{layout}:latest", f"docker://{dest}"]
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": tmp, "TMPDIR": tmp,
               "REGISTRY_AUTH_FILE": f"{tmp}/auth.json"}
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr}")


BASE_LAYER: tuple[Entry, ...] = (_dir("ok"), _file("ok/harmless.txt", b"fine\n"))


@dataclass(frozen=True)
class HostileImage:
    case: Case
    ref: str
    digests: dict[str, str]


def build_and_push(host: str, workdir: Path, target: Path) -> list[HostileImage]:
    out = []
    for case in cases(target):
        layout = workdir / case.name
        digests = write_layout(layout, [layer_tar(BASE_LAYER), layer_tar(case.entries)])
        ref = f"{host}/evil/{case.name}:latest"
        push_layout(layout, ref)
        out.append(HostileImage(case, ref, digests))
    return out
