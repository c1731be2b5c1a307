"""Credentials → the Login for one endpoint: the request's for the image's registry, else the
auth file's most specific entry; secrets never printed."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from shim.images.auth import (
    AuthError,
    AuthFile,
    Credentials,
    _server_key,
    load_auth_file,
    run_helper,
)
from shim.images.auth import login_for as _login_for
from shim.images.distribution import Login


def login_for(name: str, primary: str, creds: Credentials, auths: dict[str, Any]) -> Login:
    """The auth file given as its ``auths`` table (no helpers)."""
    return _login_for(name, primary, creds, AuthFile(auths))

def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def creds_of(login: Login) -> tuple[str, str, str, str]:
    return login.username, login.password, login.identity_token, login.registry_token


# --- request credentials ---------------------------------------------------------------------
@pytest.mark.parametrize(("c", "want"), [
    (Credentials(username="u", password="p"), ("u", "p", "", "")),
    (Credentials(auth=b64("au:ap:with:colons")), ("au", "ap:with:colons", "", "")),
    (Credentials(auth=b64("au:ap"), username="ignored", password="x"), ("au", "ap", "", "")),
    (Credentials(identity_token="idt"), ("", "", "idt", "")),
    (Credentials(username="u", identity_token="idt"), ("u", "", "idt", "")),
    (Credentials(registry_token="rt"), ("", "", "", "rt")),
])
def test_request_creds_apply_to_primary(c: Credentials, want: tuple[str, ...]) -> None:
    glob = {"r.io": {"auth": b64("file:file")}}
    assert creds_of(login_for("r.io/ns/img", "r.io", c, glob)) == want


@pytest.mark.parametrize("server", [
    "q.io", "https://q.io", "https://q.io/", "https://q.io/v1/", "https://q.io/v2/",
    "https://q.io/v2", "http://q.io/v1/",
])
def test_request_creds_apply_to_server_address(server: str) -> None:
    c = Credentials(username="u", password="p", server_address=server)
    # the image is on r.io, but the endpoint tried is q.io (e.g. a rewritten location)
    assert creds_of(login_for("q.io/img", "r.io", c, {})) == ("u", "p", "", "")
    assert creds_of(login_for("other.io/img", "r.io", c, {})) == ("", "", "", "")


@pytest.mark.parametrize("server", [
    "https://index.docker.io/v1/", "index.docker.io", "https://registry-1.docker.io/v2/",
    "docker.io",
])
def test_docker_hub_legacy_server_address(server: str) -> None:
    c = Credentials(identity_token="tok", server_address=server)
    assert creds_of(login_for("docker.io/library/busybox", "q.io", c, {})) == ("", "", "tok", "")


def test_mirror_gets_its_own_file_entry_not_the_request_creds() -> None:
    glob = {"mirror.io": {"auth": b64("m:mp")}, "docker.io": {"auth": b64("h:hp")}}
    c = Credentials(username="u", password="p")
    assert creds_of(login_for("mirror.io/library/busybox", "docker.io", c, glob)) == \
        ("m", "mp", "", "")
    assert creds_of(login_for("docker.io/library/busybox", "docker.io", c, glob)) == \
        ("u", "p", "", "")
    # a mirror without an entry goes anonymous, never with the request's credentials
    assert creds_of(login_for("mirror2.io/library/busybox", "docker.io", c, glob)) == \
        ("", "", "", "")


def test_no_request_creds_uses_file() -> None:
    glob = {"r.io": {"auth": b64("g:g")}}
    assert creds_of(login_for("r.io/img", "r.io", Credentials(), glob)) == ("g", "g", "", "")
    # server_address alone is no credential
    c = Credentials(server_address="r.io")
    assert c.empty
    assert creds_of(login_for("r.io/img", "r.io", c, glob)) == ("g", "g", "", "")
    assert login_for("x.io/img", "x.io", Credentials(), {}) == Login()


# --- auth file -------------------------------------------------------------------------------
def test_file_most_specific_first() -> None:
    glob = {
        "r.io": {"auth": b64("host:h")},
        "r.io/ns": {"auth": b64("ns:n")},
        "r.io/ns/repo": {"auth": b64("repo:r")},
    }
    none = Credentials()
    assert login_for("r.io/ns/repo", "r.io", none, glob).username == "repo"
    assert login_for("r.io/ns/other", "r.io", none, glob).username == "ns"
    assert login_for("r.io/ns/repo/sub", "r.io", none, glob).username == "repo"
    assert login_for("r.io/x/repo", "r.io", none, glob).username == "host"
    assert login_for("r.io/nsx/repo", "r.io", none, glob).username == "host"  # not a prefix
    assert login_for("s.io/ns/repo", "s.io", none, glob) == Login()


def test_file_keys_normalised() -> None:
    none = Credentials()
    glob = {"https://index.docker.io/v1/": {"auth": b64("h:h")},
            "https://r.io/v2/": {"auth": b64("r:r")},
            "http://s.io/ns/": {"auth": b64("s:s")}}
    assert login_for("docker.io/library/x", "docker.io", none, glob).username == "h"
    assert login_for("r.io/a/b", "r.io", none, glob).username == "r"
    assert login_for("s.io/ns/b", "s.io", none, glob).username == "s"
    assert login_for("s.io/other/b", "s.io", none, glob) == Login()


@pytest.mark.parametrize(("entry", "want"), [
    ({"identitytoken": "idt"}, ("", "", "idt", "")),
    ({"registrytoken": "rt"}, ("", "", "", "rt")),
    ({"username": "u", "password": "p"}, ("u", "p", "", "")),
    ({"auth": b64("a:b"), "identitytoken": "idt"}, ("a", "b", "idt", "")),
    ({"auth": b64("a:b"), "username": "u", "password": "p"}, ("a", "b", "", "")),
    ({"auth": "", "identitytoken": None}, ("", "", "", "")),
    ({}, ("", "", "", "")),
])
def test_file_entry_fields(entry: dict[str, object], want: tuple[str, ...]) -> None:
    assert creds_of(login_for("r.io/x", "r.io", Credentials(), {"r.io": entry})) == want


@pytest.mark.parametrize("key", ["r.io", "https://r.io/v1/"])
def test_file_entry_not_an_object(key: str) -> None:
    with pytest.raises(AuthError, match="not an object"):
        login_for("r.io/x", "r.io", Credentials(), {key: "nope"})


@pytest.mark.parametrize("bad", [b64("nocolon-SECRET"), "SECRET!!not-base64", "U0VDUkVU="
                                 "extra", base64.b64encode(b"\xff\xfeSECRET:x").decode()])
def test_bad_base64_never_shows_the_secret(bad: str) -> None:
    with pytest.raises(AuthError) as e:
        Credentials(auth=bad).login()
    assert "SECRET" not in str(e.value) and bad not in str(e.value)
    with pytest.raises(AuthError) as e:
        login_for("r.io/x", "r.io", Credentials(auth=bad), {})
    assert "SECRET" not in str(e.value) and bad not in str(e.value)
    with pytest.raises(AuthError) as e:
        login_for("r.io/x", "r.io", Credentials(), {"r.io": {"auth": bad}})
    assert "SECRET" not in str(e.value) and bad not in str(e.value)
    # a bad request credential does not matter for an endpoint it does not apply to
    assert login_for("m.io/x", "r.io", Credentials(auth=bad), {}) == Login()


def test_repr_hides_secrets() -> None:
    c = Credentials(username="u", password="PW-SECRET", auth=b64("u:AUTH-SECRET"),
                    identity_token="ID-SECRET", registry_token="RT-SECRET",
                    server_address="r.io")
    for text in (repr(c), str(c), repr(c.login()), str(c.login()),
                 repr(Login("u", "PW-SECRET", "ID-SECRET", "RT-SECRET"))):
        assert "SECRET" not in text
        assert b64("u:AUTH-SECRET") not in text
    assert "u" in repr(c)


def test_fingerprint() -> None:
    assert Credentials().fingerprint() == ""
    assert Credentials(server_address="r.io").fingerprint() == ""
    fps = {Credentials(password="a").fingerprint(), Credentials(password="b").fingerprint(),
           Credentials(username="a").fingerprint(), Credentials(auth="a").fingerprint(),
           Credentials(identity_token="a").fingerprint(),
           Credentials(registry_token="a").fingerprint(),
           Credentials(username="ab", password="").fingerprint(),
           Credentials(username="a", password="b").fingerprint()}
    assert len(fps) == 8
    fp = Credentials(username="u", password="SECRET").fingerprint()
    assert fp == Credentials(username="u", password="SECRET").fingerprint()
    assert "SECRET" not in fp and len(fp) == 16
    # server_address does not change which credentials they are
    assert fp == Credentials(username="u", password="SECRET", server_address="x").fingerprint()


def test_server_key() -> None:
    assert _server_key("https://index.docker.io/v1/") == "docker.io"
    assert _server_key("registry-1.docker.io") == "docker.io"
    assert _server_key("docker.io") == "docker.io"
    assert _server_key("https://r.io:5000/v2/") == "r.io:5000"
    assert _server_key("r.io/ns/repo/") == "r.io/ns/repo"
    assert _server_key("[::1]:5000") == "[::1]:5000"


# --- load_auth_file --------------------------------------------------------------------------
def test_load_auth_file(tmp_path: Path) -> None:
    assert load_auth_file("").auths == {}
    assert load_auth_file(str(tmp_path / "missing.json")).auths == {}
    p = tmp_path / "a.json"
    p.write_text('{"auths": {"r": {"auth": "x"}}}')
    assert load_auth_file(str(p)).auths == {"r": {"auth": "x"}}
    p.write_text('{"credHelpers": {}}')
    assert load_auth_file(str(p)).auths == {}
    p.write_text('{"auths": []}')
    assert load_auth_file(str(p)).auths == {}
    p.write_text("[1, 2]")
    assert load_auth_file(str(p)).auths == {}
    p.write_text('{broken "SECRET"')
    with pytest.raises(AuthError) as e:
        load_auth_file(str(p))
    assert "SECRET" not in str(e.value)
    with pytest.raises(AuthError):
        load_auth_file(str(tmp_path))  # a directory


# --- credential helpers ----------------------------------------------------------------------
@pytest.fixture
def helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Fake docker-credential-* programs on PATH: ``good`` answers for r.io, ``token`` gives
    an identity token, ``none`` has nothing, ``broken`` fails; each logs the host it got."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    scripts = {
        "good": 'read h; echo "$h" >> LOG; '
                'echo "{\\"ServerURL\\":\\"$h\\",\\"Username\\":\\"hu\\",\\"Secret\\":\\"hs\\"}"',
        "token": 'read h; echo "{\\"Username\\":\\"<token>\\",\\"Secret\\":\\"idt\\"}"',
        "none": "read h; echo 'credentials not found in native keychain'; exit 1",
        "broken": "read h; echo oops >&2; exit 3",
    }
    for name, body in scripts.items():
        p = bindir / f"docker-credential-{name}"
        p.write_text("#!/bin/sh\n" + body.replace("LOG", str(tmp_path / "log")) + "\n")
        p.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    return tmp_path


def test_cred_helpers_and_store(helpers: Path) -> None:
    none = Credentials()
    af = AuthFile(auths={"a.io": {"auth": base64.b64encode(b"fu:fp").decode()}},
                  cred_helpers={"r.io": "good", "t.io": "token", "n.io": "none",
                                "a.io": "good"},
                  creds_store="token")
    assert creds_of(_login_for("r.io/ns/img", "r.io", none, af)) == ("hu", "hs", "", "")
    assert (helpers / "log").read_text() == "r.io\n"  # the host, on stdin
    assert creds_of(_login_for("t.io/img", "t.io", none, af)) == ("", "", "idt", "")
    assert _login_for("n.io/img", "n.io", none, af) == Login()
    # credHelpers wins over auths for its registry; credsStore serves the rest
    assert creds_of(_login_for("a.io/img", "a.io", none, af)) == ("hu", "hs", "", "")
    assert creds_of(_login_for("z.io/img", "z.io", none, af)) == ("", "", "idt", "")
    # request credentials still win for the image's own registry
    req = Credentials(username="u", password="p")
    assert creds_of(_login_for("r.io/img", "r.io", req, af)) == ("u", "p", "", "")


def test_cred_helper_failures(helpers: Path) -> None:
    with pytest.raises(AuthError, match="docker-credential-broken failed"):
        run_helper("broken", "r.io")
    with pytest.raises(AuthError, match="docker-credential-absent"):
        run_helper("absent", "r.io")


def test_auth_file_helpers(tmp_path: Path) -> None:
    p = tmp_path / "auth.json"
    p.write_text('{"auths": {}, "credHelpers": {"https://r.io": "good"}, "credsStore": "x"}')
    af = load_auth_file(str(p))
    assert af.cred_helpers == {"r.io": "good"} and af.creds_store == "x"
    p.write_text('{"credHelpers": {"r.io": "../../bin/sh"}}')
    with pytest.raises(AuthError, match="bad credential helper name"):
        load_auth_file(str(p))
