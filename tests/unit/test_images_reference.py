"""Image reference parsing and normalisation (docker's rules)."""

from __future__ import annotations

import pytest

from shim.images.reference import InvalidReference, is_image_id, normalize_id, parse, parse_name

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        ("library/busybox", "docker.io/library/busybox:latest"),
        ("user/app", "docker.io/user/app:latest"),
        ("docker.io/busybox", "docker.io/library/busybox:latest"),
        ("index.docker.io/library/busybox:1", "docker.io/library/busybox:1"),
        ("quay.io/org/app:v1", "quay.io/org/app:v1"),
        ("localhost/app", "localhost/app:latest"),
        ("localhost:5000/a/b/c:t", "localhost:5000/a/b/c:t"),
        ("127.0.0.1:5000/busybox", "127.0.0.1:5000/busybox:latest"),
        (f"busybox@{D}", f"docker.io/library/busybox@{D}"),
        (f"busybox:1@{D}", f"docker.io/library/busybox:1@{D}"),
        ("a.b/c_d/e__f/g-h--i:T.1-x", "a.b/c_d/e__f/g-h--i:T.1-x"),
        ("[::1]:5000/x", "[::1]:5000/x:latest"),
    ],
)
def test_normalise(text: str, want: str) -> None:
    assert str(parse(text)) == want


@pytest.mark.parametrize(
    "text",
    ["", " busybox", "Busybox", "busybox:", "busybox:-x", "busybox@sha256:abc",
     "busybox@md5:" + "a" * 32, "a" * 64, "-a/b", "a//b", "a/b/", "host:5000/", "a:b:c",
     "x" * 300, "a/B", "a..b", "a/.b", "bad host:1/x"],
)
def test_invalid(text: str) -> None:
    with pytest.raises(InvalidReference):
        parse(text)


def test_short_names_and_parts() -> None:
    p = parse_name("busybox:1")
    assert p.short and p.path == "busybox" and p.tag == "1"
    assert str(p.qualify("quay.io")) == "quay.io/busybox:1"
    assert str(p.qualify("docker.io")) == "docker.io/library/busybox:1"
    assert not parse_name("example.com/x").short
    r = parse("busybox")
    assert r.name == "docker.io/library/busybox"
    assert r.tagged() == "docker.io/library/busybox:latest"
    assert str(r.with_digest(D)) == f"docker.io/library/busybox@{D}"


def test_image_ids() -> None:
    assert is_image_id(D) and is_image_id("ab" * 32)
    assert not is_image_id("busybox") and not is_image_id("sha256:abc")
    assert normalize_id("ab" * 32) == D and normalize_id(D) == D
