"""shim/rpc/image_convert.py: image summaries, auth and usage as CRI messages."""

from __future__ import annotations

import pytest

from shim.cri import api_pb2 as pb
from shim.errors import InvalidArgument
from shim.images.fsusage import Usage
from shim.images.manifest import ImageConfig
from shim.images.model import Image, summarize
from shim.rpc.image_convert import credentials, filesystem_usage, list_filter, to_image

ID = "sha256:" + "a" * 64


@pytest.mark.parametrize(("user", "uid", "username"),
                         [("", None, ""), ("1000:1000", 1000, ""), ("alice", None, "alice")])
def test_to_image(user: str, uid: int | None, username: str) -> None:
    img = Image(id=ID, repo_tags=("r.io/x:1",), repo_digests=(f"r.io/x@{ID}",), size=7,
                config=ImageConfig(user=user))
    msg = to_image(summarize(img, pinned=True))
    assert (msg.id, list(msg.repo_tags), list(msg.repo_digests), msg.size) == \
        (ID, ["r.io/x:1"], [f"r.io/x@{ID}"], 7)
    assert msg.spec.image == ID and msg.pinned and msg.username == username
    assert msg.HasField("uid") == (uid is not None)
    if uid is not None:
        assert msg.uid.value == uid


def test_credentials() -> None:
    c = credentials(pb.AuthConfig(username="u", password="p", server_address="r.io"))
    assert (c.username, c.password, c.server_address) == ("u", "p", "r.io")
    with pytest.raises(InvalidArgument, match=r"auth\.password"):
        credentials(pb.AuthConfig(username="u", password="p\r\nX-Evil: 1"))


def test_filesystem_usage_and_filter() -> None:
    u = filesystem_usage(Usage(path="/var/lib/x", timestamp=5, used_bytes=10, inodes_used=2))
    assert (u.fs_id.mountpoint, u.timestamp, u.used_bytes.value, u.inodes_used.value) == \
        ("/var/lib/x", 5, 10, 2)
    assert list_filter(pb.ListImagesRequest()) == ""
    req = pb.ListImagesRequest(filter=pb.ImageFilter(image=pb.ImageSpec(image="busybox")))
    assert list_filter(req) == "busybox"
