"""Credentials to auth.json: merged, keyed by registry, written privately, removed after."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from shim.images.auth import AuthError, Credentials, auth_file, build, load_auth_file


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def test_build_merges_request_over_global() -> None:
    glob = {"r.io": {"auth": b64("g:g")}, "https://index.docker.io/v1/": {"auth": b64("h:h")}}
    doc = build("r.io", Credentials(username="u", password="p"), glob)
    assert doc["auths"]["r.io"] == {"auth": b64("u:p")}
    assert doc["auths"]["docker.io"] == {"auth": b64("h:h")}
    doc = build("q.io", Credentials(identity_token="tok", server_address="https://q.io/v2"), {})
    assert doc["auths"]["q.io"] == {"identitytoken": "tok"}
    assert build("r.io", Credentials(), glob)["auths"]["r.io"] == {"auth": b64("g:g")}


def test_bad_credentials() -> None:
    with pytest.raises(AuthError, match="registry_token"):
        Credentials(registry_token="secret").entry()
    with pytest.raises(AuthError) as e:
        Credentials(auth=b64("nocolon")).entry()
    assert "nocolon" not in str(e.value)
    assert "pw" not in repr(Credentials(username="u", password="pw"))
    assert Credentials().fingerprint() == ""
    assert Credentials(password="a").fingerprint() != Credentials(password="b").fingerprint()


def test_auth_file_is_private_and_removed(tmp_path: Path) -> None:
    with auth_file(str(tmp_path / "auth"), {"auths": {"r": {"auth": "x"}}}) as path:
        st = os.stat(path)
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert stat.S_IMODE(os.stat(tmp_path / "auth").st_mode) == 0o700
        assert json.loads(Path(path).read_text()) == {"auths": {"r": {"auth": "x"}}}
    assert not os.path.exists(path)


def test_load_auth_file(tmp_path: Path) -> None:
    assert load_auth_file("") == {}
    assert load_auth_file(str(tmp_path / "missing.json")) == {}
    p = tmp_path / "a.json"
    p.write_text('{"auths": {"r": {"auth": "x"}}}')
    assert load_auth_file(str(p)) == {"r": {"auth": "x"}}
    p.write_text("{broken")
    with pytest.raises(AuthError):
        load_auth_file(str(p))
