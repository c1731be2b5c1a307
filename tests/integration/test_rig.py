"""The test rig itself: private netns, registry, offline images, auth."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.rig import netns
from tests.rig.images import IMAGE_NAMES, ImageRegistry, layout_path, push_image
from tests.rig.registry import RegistryServer, http_get

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
ACCEPT = ", ".join(
    [
        OCI_MANIFEST,
        OCI_INDEX,
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
SINGLE_ARCH = [n for n in IMAGE_NAMES if n != "multiarch"]


def skopeo_inspect(ref: str, *extra: str) -> dict[str, Any]:
    res = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--no-creds", *extra, f"docker://{ref}"],
        capture_output=True, text=True, check=False, timeout=60,
    )
    assert res.returncode == 0, res.stderr
    data: dict[str, Any] = json.loads(res.stdout)
    return data


def manifest(reg: ImageRegistry, name: str, reference: str = "latest") -> tuple[bytes, str]:
    r = http_get(f"{reg.url}/v2/{name}/manifests/{reference}", accept=ACCEPT)
    assert r.status == 200, r.body
    return r.body, r.headers["Content-Type"]


def blob(reg: ImageRegistry, name: str, digest: str) -> bytes:
    r = http_get(f"{reg.url}/v2/{name}/blobs/{digest}")
    assert r.status == 200, r.body
    assert "sha256:" + hashlib.sha256(r.body).hexdigest() == digest
    return r.body


def layer_members(data: bytes) -> dict[str, tarfile.TarInfo | bytes]:
    """Entries of a gzipped layer: name -> file content (regular files) or TarInfo."""
    raw = gzip.decompress(data)
    # a well-formed tar stream: whole records, closed by two zero blocks
    assert len(raw) % 512 == 0 and raw.endswith(b"\0" * 1024), "truncated layer tarball"
    out: dict[str, tarfile.TarInfo | bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        for m in tf:
            name = m.name.removeprefix("./").rstrip("/")
            if m.isfile():
                f = tf.extractfile(m)
                assert f is not None
                out[name] = f.read()
            else:
                out[name] = m
    return out


def test_private_netns_and_loopback() -> None:
    netns.assert_private_netns()
    assert netns.in_private_netns()
    assert netns.loopback_is_up()


def test_layouts_built(test_images: Path) -> None:
    for name in IMAGE_NAMES:
        index = json.loads((layout_path(name, test_images) / "index.json").read_text())
        assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == (
            "latest"
        )


@pytest.mark.parametrize("name", SINGLE_ARCH)
def test_skopeo_inspect(registry: ImageRegistry, name: str) -> None:
    info = skopeo_inspect(registry.ref(name))
    assert info["Digest"] == registry.digest(name)
    assert info["Architecture"] == "amd64" and info["Os"] == "linux"
    assert "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" in info["Env"]
    # by digest too, and the registry keeps the layout's digest (skopeo --preserve-digests)
    assert skopeo_inspect(registry.digest_ref(name))["Digest"] == registry.digest(name)
    index = json.loads((layout_path(name) / "index.json").read_text())
    assert index["manifests"][0]["digest"] == registry.digest(name)


def test_busybox_image(registry: ImageRegistry) -> None:
    body, ctype = manifest(registry, "busybox")
    assert ctype == OCI_MANIFEST
    m = json.loads(body)
    assert len(m["layers"]) == 1
    cfg = json.loads(blob(registry, "busybox", m["config"]["digest"]))
    assert cfg["config"]["Cmd"] == ["sh"]
    files = layer_members(blob(registry, "busybox", m["layers"][0]["digest"]))
    for applet in ("sh", "sleep", "top", "ps", "nc", "httpd", "id", "hostname", "wget", "ip"):
        paths = [f"{d}/{applet}" for d in ("bin", "sbin", "usr/bin", "usr/sbin")]
        entries = [files[p] for p in paths if p in files]
        assert len(entries) == 1, applet
        entry = entries[0]
        assert isinstance(entry, tarfile.TarInfo) and entry.issym(), applet
        assert entry.linkname == "/bin/busybox"
    assert "bin/sh" in files
    assert isinstance(files["bin/busybox"], bytes)
    passwd = files["etc/passwd"]
    group = files["etc/group"]
    assert isinstance(passwd, bytes) and isinstance(group, bytes)
    assert passwd.startswith(b"root:x:0:0:") and b"\nnobody:x:65534:65534:" in passwd
    assert b"root:x:0:" in group and b"nobody:x:65534:" in group


def test_web_image(registry: ImageRegistry) -> None:
    info = skopeo_inspect(registry.ref("web"), "--config")
    cfg = info["config"]
    assert cfg["Entrypoint"] == ["/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www"]
    assert not cfg.get("Cmd")
    assert "80/tcp" in cfg["ExposedPorts"]
    m = json.loads(manifest(registry, "web")[0])
    busybox_layers = json.loads(manifest(registry, "busybox")[0])["layers"]
    assert m["layers"][0]["digest"] == busybox_layers[0]["digest"]  # shared base layer
    files = layer_members(blob(registry, "web", m["layers"][1]["digest"]))
    index_html = files["www/index.html"]
    assert isinstance(index_html, bytes) and b"tether-test-web" in index_html


def test_multiarch_is_an_index(registry: ImageRegistry) -> None:
    body, ctype = manifest(registry, "multiarch")
    assert ctype == OCI_INDEX
    assert "sha256:" + hashlib.sha256(body).hexdigest() == registry.digest("multiarch")
    index = json.loads(body)
    platforms = {
        (d["platform"]["os"], d["platform"]["architecture"]): d for d in index["manifests"]
    }
    assert set(platforms) == {("linux", "amd64"), ("linux", "arm64")}
    raw = skopeo_inspect(registry.ref("multiarch"), "--raw")
    assert raw["mediaType"] == OCI_INDEX and len(raw["manifests"]) == 2
    for arch in ("amd64", "arm64"):
        desc = platforms[("linux", arch)]
        m = json.loads(manifest(registry, "multiarch", desc["digest"])[0])
        cfg = json.loads(blob(registry, "multiarch", m["config"]["digest"]))
        assert cfg["architecture"] == arch and cfg["os"] == "linux"
        top = layer_members(blob(registry, "multiarch", m["layers"][-1]["digest"]))
        assert top["ARCH"] == f"{arch}\n".encode()
        info = skopeo_inspect(registry.ref("multiarch"), "--override-arch", arch)
        # (skopeo reports the digest of what the tag names: the index)
        assert info["Architecture"] == arch and info["Digest"] == registry.digest("multiarch")
        assert info["Layers"] == [d["digest"] for d in m["layers"]]


def apply_layers(layers: list[dict[str, tarfile.TarInfo | bytes]]) -> dict[str, bytes | None]:
    """What a rootfs shows after the layers, by the OCI whiteout rules (names only; None
    stands for anything that is not a regular file)."""
    fs: dict[str, bytes | None] = {}
    for layer in layers:
        # opaque dirs first: they hide what lower layers had below them, not this layer's
        for name in layer:
            base = name.rsplit("/", 1)
            if base[-1] == ".wh..wh..opq":
                d = base[0] if len(base) == 2 else ""
                for p in [p for p in fs if p.startswith(d + "/")]:
                    del fs[p]
        for name, entry in layer.items():
            parent, _, leaf = name.rpartition("/")
            if leaf == ".wh..wh..opq":
                continue
            if leaf.startswith(".wh."):
                gone = f"{parent}/{leaf[4:]}" if parent else leaf[4:]
                for p in [p for p in fs if p == gone or p.startswith(gone + "/")]:
                    del fs[p]
                continue
            fs[name] = entry if isinstance(entry, bytes) else None
    return fs


def test_layers_image(registry: ImageRegistry) -> None:
    info = skopeo_inspect(registry.ref("layers"))
    assert len(info["Layers"]) == 5
    m = json.loads(manifest(registry, "layers")[0])
    layers = [layer_members(blob(registry, "layers", d["digest"])) for d in m["layers"]]
    whiteouts = [i for i, layer in enumerate(layers) if "data/.wh.gone.txt" in layer]
    opaque = [i for i, layer in enumerate(layers) if "data/dir/.wh..wh..opq" in layer]
    assert whiteouts == [3] and opaque == [4]
    assert "data/dir/c" in layers[4] and "data/dir/a" in layers[1]
    fs = apply_layers(layers)
    expected = fs["EXPECTED"]
    assert expected is not None
    checked = 0
    for line in expected.decode().splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "present":
            path, _, content = rest.partition(" ")
            assert fs.get(path.lstrip("/")) == (content + "\n").encode(), path
            checked += 1
        elif kind == "absent":
            assert rest.lstrip("/") not in fs, rest
            checked += 1
    assert checked == 7
    assert fs["check-expected"] is not None


def test_user_image(registry: ImageRegistry) -> None:
    info = skopeo_inspect(registry.ref("user"), "--config")
    assert info["config"]["User"] == "1000:1000"
    m = json.loads(manifest(registry, "user")[0])
    top = layer_members(blob(registry, "user", m["layers"][-1]["digest"]))
    passwd, group = top["etc/passwd"], top["etc/group"]
    assert isinstance(passwd, bytes) and isinstance(group, bytes)
    assert b"\nalice:x:1000:1000:" in passwd and b"\nbob:x:1001:1001:" in passwd
    assert b"\nstaff:x:50:alice\n" in group
    home = top["home/alice"]
    assert isinstance(home, tarfile.TarInfo) and home.isdir() and (home.uid, home.gid) == (
        1000, 1000)


def test_registry_with_auth(registry_factory: Callable[..., RegistryServer]) -> None:
    reg = registry_factory(auth=("tether", "s3cret-pw"))
    anon = http_get(reg.url + "/v2/")
    assert anon.status == 401
    assert anon.headers.get("Www-Authenticate", "").startswith("Basic")
    assert http_get(reg.url + "/v2/", auth=("tether", "wrong")).status == 401
    assert http_get(reg.url + "/v2/", auth=("tether", "s3cret-pw")).status == 200
    # pushing needs the credentials; pulling with them works, anonymously it does not
    with pytest.raises(RuntimeError):
        push_image(reg.host, "busybox")
    pushed = push_image(reg.host, "busybox", creds=reg.creds)
    r = http_get(f"{reg.url}/v2/busybox/manifests/latest", auth=reg.auth, accept=ACCEPT)
    assert r.status == 200
    assert "sha256:" + hashlib.sha256(r.body).hexdigest() == pushed.digest
    assert http_get(f"{reg.url}/v2/busybox/manifests/latest", accept=ACCEPT).status == 401


def test_registry_refuses_host_netns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard really guards: seen from the host namespace, start() refuses."""
    import bench.hostenv

    monkeypatch.setattr(netns, "host_netns_inode", netns.netns_inode)
    monkeypatch.setattr(bench.hostenv, "host_netns_inode", netns.netns_inode)
    assert not netns.in_private_netns()
    server = RegistryServer(tmp_path / "reg")
    with pytest.raises(netns.NotInPrivateNetns):
        server.start()
    assert server.proc is None
