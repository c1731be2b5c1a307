"""skopeo's stderr: the message extracted and mapped to the right error kind."""

from __future__ import annotations

import pytest

from shim import errors
from shim.images.skopeo import classify, error_text


def fatal(msg: str) -> str:
    quoted = msg.replace('"', '\\"')
    return f'time="2024-01-01T00:00:00Z" level=fatal msg="{quoted}"\n'


@pytest.mark.parametrize(("msg", "kind"), [
    ('Error parsing image name "docker://r/x:1": reading manifest 1 in r/x: manifest unknown',
     errors.NotFound),
    ("reading manifest latest in r/nope: name unknown: repository name not known to registry",
     errors.NotFound),
    ("initializing source docker://r/x:1: reading manifest 1 in r/x: unauthorized: "
     "authentication required", errors.Unauthenticated),
    ("invalid username/password: unauthorized: incorrect username or password",
     errors.Unauthenticated),
    ("requested access to the resource is denied", errors.PermissionDenied),
    ('pinging container registry r: Get "https://r/v2/": dial tcp 127.0.0.1:1: connect: '
     "connection refused", errors.Unavailable),
    ('Get "https://r/v2/": http: server gave HTTP response to HTTPS client', errors.Unavailable),
    ("registry r is blocked in /run/registries.conf", errors.PermissionDenied),
    ("something nobody expected", errors.Internal),
])
def test_classify(msg: str, kind: type[errors.TetherError]) -> None:
    text = error_text(fatal(msg))
    assert classify(text) is kind
    assert not text.startswith("Error parsing image name")
    assert "level=" not in text


def test_error_text_keeps_quotes_and_trims() -> None:
    text = error_text(fatal('Get "https://r/v2/": EOF'))
    assert text == 'Get "https://r/v2/": EOF'
    long = error_text(fatal("x" * 2000))
    assert len(long) <= 513
    assert error_text("plain failure line\n") == "plain failure line"
