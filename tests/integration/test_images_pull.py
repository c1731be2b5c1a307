"""PullImage against the real local registry: tags, digests, indexes, layers, rootfs."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from tests.integration.images_fixtures import *  # noqa: F403  (fixtures)
from tests.integration.images_fixtures import ImageDaemon, rootfs_of
from tests.rig.images import ImageRegistry


def test_pull_by_tag(registry: ImageRegistry, image_daemon: ImageDaemon) -> None:
    ref = registry.ref("busybox")
    image_id = image_daemon.pull(ref)
    assert image_id.startswith("sha256:")
    st = image_daemon.status(ref)
    assert st.image.id == image_id
    assert list(st.image.repo_tags) == [ref]
    assert list(st.image.repo_digests) == [
        f"{registry.host}/busybox@{registry.digest('busybox')}"
    ]
    assert st.image.size > 0
    # by id and by digest the same image
    assert image_daemon.status(image_id).image.id == image_id
    assert image_daemon.status(registry.digest_ref("busybox")).image.id == image_id
    listed = image_daemon.list()
    assert [i.id for i in listed] == [image_id]


def test_rootfs_mount(registry: ImageRegistry, image_daemon: ImageDaemon, tmp_path: Path) -> None:
    image_id = image_daemon.pull(registry.ref("web"))
    with rootfs_of(image_daemon, image_id, tmp_path / "ctr") as rootfs:
        assert (rootfs / "bin" / "busybox").is_file()
        assert (rootfs / "www" / "index.html").is_file()
    assert not (tmp_path / "ctr" / "rootfs").exists()


def test_verbose_status(registry: ImageRegistry, image_daemon: ImageDaemon) -> None:
    image_daemon.pull(registry.ref("web"))
    st = image_daemon.status(registry.ref("web"), verbose=True)
    info = json.loads(st.info["info"])
    assert info["imageSpec"]["config"]["Entrypoint"][0].endswith("busybox")
    assert len(info["manifest"]["layers"]) == 2


def test_pull_by_digest(registry: ImageRegistry, image_daemon: ImageDaemon) -> None:
    image_id = image_daemon.pull(registry.digest_ref("busybox"))
    st = image_daemon.status(image_id).image
    assert list(st.repo_tags) == []
    assert list(st.repo_digests) == [registry.digest_ref("busybox")]
    # the same image by tag afterwards: no second copy, the tag is added
    assert image_daemon.pull(registry.ref("busybox")) == image_id
    assert list(image_daemon.status(image_id).image.repo_tags) == [registry.ref("busybox")]


def test_multiarch_index_picks_amd64(
    registry: ImageRegistry, image_daemon: ImageDaemon, tmp_path: Path
) -> None:
    image_id = image_daemon.pull(registry.ref("multiarch"))
    st = image_daemon.status(registry.ref("multiarch"))
    # the repo digest is the index's, as kubelet and containerd expect
    assert list(st.image.repo_digests) == [registry.digest_ref("multiarch")]
    info = json.loads(image_daemon.status(image_id, verbose=True).info["info"])
    assert info["imageSpec"]["architecture"] == "amd64"
    with rootfs_of(image_daemon, image_id, tmp_path / "ctr") as rootfs:
        assert (rootfs / "ARCH").read_text().strip() == "amd64"


def test_whiteouts_and_opaque_dirs(
    registry: ImageRegistry, image_daemon: ImageDaemon, tmp_path: Path
) -> None:
    image_id = image_daemon.pull(registry.ref("layers"))
    with rootfs_of(image_daemon, image_id, tmp_path / "ctr") as rootfs:
        checked = 0
        for line in (rootfs / "EXPECTED").read_text().splitlines():
            if not line or line.startswith("#"):
                continue
            kind, path, *content = line.split(" ", 2)
            p = rootfs / path.lstrip("/")
            if kind == "present":
                assert p.is_file() and p.read_text().strip() == content[0], line
            else:
                assert not p.exists() and not p.is_symlink(), line
            checked += 1
        assert checked == 7
        assert sorted(x.name for x in (rootfs / "data" / "dir").iterdir()) == ["c"]


def test_user_image_uid_and_ownership(
    registry: ImageRegistry, image_daemon: ImageDaemon, tmp_path: Path
) -> None:
    image_id = image_daemon.pull(registry.ref("user"))
    st = image_daemon.status(image_id).image
    assert st.HasField("uid") and st.uid.value == 1000
    assert st.username == ""
    with rootfs_of(image_daemon, image_id, tmp_path / "ctr") as rootfs:
        home = (rootfs / "home" / "alice").stat()
        assert (home.st_uid, home.st_gid, home.st_mode & 0o7777) == (1000, 1000, 0o750)


def test_docker_schema2_image(
    registry: ImageRegistry, extra_images: dict[str, str], image_daemon: ImageDaemon
) -> None:
    from tests.rig.registry import http_get

    ref = extra_images["bbs2"]
    accept = "application/vnd.docker.distribution.manifest.v2+json"
    manifest = json.loads(
        http_get(f"{registry.url}/v2/bbs2/manifests/latest", accept=accept).body
    )
    assert manifest["mediaType"] == accept
    image_id = image_daemon.pull(ref)
    # the image id is the registry's config digest, even though skopeo stores an OCI copy
    assert image_id == manifest["config"]["digest"]
    assert image_daemon.status(ref).image.id == image_id


@pytest.mark.parametrize("kind", ["zstd", "plain"])
def test_layer_fidelity(
    kind: str, extra_images: dict[str, str], image_daemon: ImageDaemon, tmp_path: Path
) -> None:
    from tests.integration.images_fixtures import ZOO_MTIME

    image_id = image_daemon.pull(extra_images[f"zoo-{kind}"])
    with rootfs_of(image_daemon, image_id, tmp_path / "ctr") as rootfs:
        suid = (rootfs / "bin/suid").lstat()
        assert stat.S_IMODE(suid.st_mode) == 0o4755 and suid.st_mtime == ZOO_MTIME
        sgid = (rootfs / "bin/sgid").lstat()
        assert (stat.S_IMODE(sgid.st_mode), sgid.st_uid, sgid.st_gid) == (0o2711, 1000, 50)
        assert (rootfs / "bin/hard").lstat().st_ino == suid.st_ino
        assert os.readlink(rootfs / "bin/sym") == "suid"
        assert os.readlink(rootfs / "bin/dangling") == "/nonexistent/target"
        null = (rootfs / "dev/null").lstat()
        assert stat.S_ISCHR(null.st_mode) and os.major(null.st_rdev) == 1
        assert os.minor(null.st_rdev) == 3
        loop = (rootfs / "dev/loop9").lstat()
        assert stat.S_ISBLK(loop.st_mode) and loop.st_gid == 6 and os.minor(loop.st_rdev) == 9
        assert stat.S_ISFIFO((rootfs / "dev/fifo").lstat().st_mode)
        alice = (rootfs / "home/alice").lstat()
        assert (alice.st_uid, stat.S_IMODE(alice.st_mode)) == (1000, 0o700)
        assert alice.st_mtime == ZOO_MTIME
        assert os.getxattr(rootfs / "home/alice/note", "user.tether") == b"zoo"
        assert stat.S_IMODE((rootfs / "sticky").lstat().st_mode) == 0o1777
