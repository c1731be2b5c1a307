"""Manifests, indexes, platform choice, image config, chain ids."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from shim.images import manifest as m
from shim.images.snapshots import SnapshotStore

D = ["sha256:" + c * 64 for c in "abcdef"]


def index(*platforms: dict[str, str], mt: str = m.OCI_INDEX) -> bytes:
    return json.dumps({
        "schemaVersion": 2, "mediaType": mt,
        "manifests": [{"mediaType": m.OCI_MANIFEST, "digest": D[i], "size": 1, "platform": p}
                      for i, p in enumerate(platforms)],
    }).encode()


def test_select_platform() -> None:
    idx = m.Index.parse(index({"os": "linux", "architecture": "arm64"},
                              {"os": "linux", "architecture": "amd64"},
                              {"os": "windows", "architecture": "amd64"}))
    amd = m.select_platform(idx, m.Platform("linux", "amd64"))
    assert amd is not None and amd.digest == D[1]
    assert m.select_platform(idx, m.Platform("linux", "s390x")) is None


def test_select_variant() -> None:
    idx = m.Index.parse(index({"os": "linux", "architecture": "arm", "variant": "v6"},
                              {"os": "linux", "architecture": "arm", "variant": "v7"},
                              {"os": "linux", "architecture": "arm64"}))
    v7 = m.select_platform(idx, m.Platform("linux", "arm", "v7"))
    assert v7 is not None and v7.digest == D[1]
    v6 = m.select_platform(idx, m.Platform("linux", "arm", "v6"))
    assert v6 is not None and v6.digest == D[0]
    arm64 = m.select_platform(idx, m.Platform("linux", "arm64", "v8"))
    assert arm64 is not None and arm64.digest == D[2]
    assert m.select_platform(m.Index.parse(index({"os": "linux", "architecture": "arm",
                                                  "variant": "v7"})),
                             m.Platform("linux", "arm", "v6")) is None


def test_kind_and_manifest() -> None:
    assert m.kind(index()) == "index"
    raw = json.dumps({"schemaVersion": 2, "mediaType": m.DOCKER_MANIFEST,
                      "config": {"digest": D[0], "size": 10},
                      "layers": [{"mediaType": m.LAYER_GZIP[1], "digest": D[1], "size": 5}]})
    assert m.kind(raw.encode()) == "manifest"
    man = m.Manifest.parse(raw.encode())
    assert man.config.digest == D[0] and man.layers[0].size == 5


@pytest.mark.parametrize("doc", [
    {"schemaVersion": 1, "fsLayers": []},
    {"schemaVersion": 2, "config": {"digest": D[0]}, "layers": [
        {"mediaType": "application/x-foo", "digest": D[1], "size": 1}]},
    {"schemaVersion": 2, "config": {"digest": "md5:abc"}, "layers": []},
    {"schemaVersion": 2, "layers": []},
    [],
])
def test_bad_manifests(doc: object) -> None:
    with pytest.raises(m.ManifestError):
        m.Manifest.parse(json.dumps(doc).encode())


def test_config_blob() -> None:
    raw = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/bin/app"], "Cmd": None, "Env": ["A=1"], "User": "1000:50",
                   "WorkingDir": "/w", "StopSignal": "SIGQUIT",
                   "ExposedPorts": {"80/tcp": {}, "53/udp": {}}, "Labels": {"a": "b"},
                   "Volumes": {"/data": {}}},
        "rootfs": {"type": "layers", "diff_ids": D[:2]},
    }).encode()
    cb = m.ConfigBlob.parse(raw)
    c = cb.config
    assert c.entrypoint == ("/bin/app",) and c.cmd == () and c.env == ("A=1",)
    assert (c.user, c.working_dir, c.stop_signal) == ("1000:50", "/w", "SIGQUIT")
    assert c.exposed_ports == ("53/udp", "80/tcp") and c.volumes == ("/data",)
    assert c.labels == {"a": "b"} and cb.diff_ids == tuple(D[:2])
    assert m.ImageConfig.from_json(c.to_json()) == c


def test_chain_ids() -> None:
    ids = m.chain_ids(D[:3])
    assert ids[0] == D[0]
    second = "sha256:" + hashlib.sha256(f"{D[0]} {D[1]}".encode()).hexdigest()
    assert ids[1] == second
    assert ids[2] == "sha256:" + hashlib.sha256(f"{second} {D[2]}".encode()).hexdigest()


@pytest.mark.parametrize(("user", "want"), [
    ("", (None, "")), ("0", (0, "")), ("1000:1000", (1000, "")), ("alice", (None, "alice")),
    ("alice:staff", (None, "alice")),
])
def test_user_ids(user: str, want: tuple[int | None, str]) -> None:
    assert m.user_ids(user) == want


def test_digests_that_would_name_paths_are_refused(tmp_path: Path) -> None:
    """A digest or diff_id becomes a directory name (the first chain id is the first
    diff_id): anything but sha256 + 64 lowercase hex is refused before it reaches a path."""
    evil = "sha256:" + "/" * 40 + "/sys/fs/cgroup" + "/" * 10  # 71 characters
    assert len(evil) == 71
    cfg = {"rootfs": {"type": "layers", "diff_ids": [evil]}, "config": {}}
    with pytest.raises(m.ManifestError, match="unsupported diff_id"):
        m.ConfigBlob.parse(json.dumps(cfg).encode())
    upper = "sha256:" + "A" * 64
    with pytest.raises(m.ManifestError, match="unsupported digest"):
        m.Descriptor.from_json({"digest": upper, "size": 1}, "layer")
    store = SnapshotStore(str(tmp_path))
    with pytest.raises(ValueError):
        store.path(evil)
    (tmp_path / ("x" * 64)).mkdir()
    assert store.chain_ids() == set()
