"""Registry credentials: a PullImageRequest's AuthConfig and the global auth.json, merged
into the :class:`Login` the registry client uses for one endpoint (auth.json entries, or a
docker-credential helper it names).

They stay in the daemon's memory: never on a command line, in a file, the store or a log line.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shim.images.distribution import Login

_HELPER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class AuthError(ValueError):
    """Unusable credentials (the message never contains them)."""


@dataclass(frozen=True, repr=False)
class Credentials:
    username: str = ""
    password: str = ""
    auth: str = ""  # base64 "user:password"
    identity_token: str = ""
    registry_token: str = ""
    server_address: str = ""

    def __repr__(self) -> str:  # never print secrets by accident
        return f"Credentials(username={self.username!r}, server={self.server_address!r})"

    @property
    def empty(self) -> bool:
        return not (self.username or self.password or self.auth or self.identity_token
                    or self.registry_token)

    def login(self) -> Login:
        if self.auth:
            user, password = _decode_auth(self.auth, "auth.auth")
        else:
            user, password = self.username, self.password
        return Login(user, password, self.identity_token, self.registry_token)

    def fingerprint(self) -> str:
        """Distinguishes credential sets (for single-flight keys) without revealing them."""
        h = hashlib.sha256()
        for part in (self.username, self.password, self.auth, self.identity_token,
                     self.registry_token):
            h.update(part.encode() + b"\0")
        return h.hexdigest()[:16] if not self.empty else ""


def _server_key(address: str) -> str:
    """auth.json keys: ``host[/namespace...]`` (``docker.io`` for Docker Hub's legacy URLs)."""
    key = address.removeprefix("https://").removeprefix("http://").rstrip("/")
    host, _, rest = key.partition("/")
    if host in ("index.docker.io", "registry-1.docker.io"):
        return "docker.io"  # https://index.docker.io/v1/ is the whole of Docker Hub
    if not rest or rest.split("/")[0] in ("v1", "v2"):  # API URLs name the whole registry
        return host
    return f"{host}/{rest}"


@dataclass(frozen=True)
class AuthFile:
    """What a pull needs of an auth.json (or Docker config.json)."""

    auths: Mapping[str, Any] = field(default_factory=dict)
    cred_helpers: Mapping[str, str] = field(default_factory=dict)  # host -> helper name
    creds_store: str = ""  # the helper for every other registry


def load_auth_file(path: str) -> AuthFile:
    """``auths``, ``credHelpers`` and ``credsStore`` of the file; empty when absent."""
    if not path:
        return AuthFile()
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        return AuthFile()
    except (OSError, ValueError) as e:
        raise AuthError(f"auth file {path} cannot be read: {type(e).__name__}") from None
    if not isinstance(doc, dict):
        return AuthFile()

    def table(key: str) -> dict[str, Any]:
        value = doc.get(key, {})
        return dict(value) if isinstance(value, Mapping) else {}

    helpers = {_server_key(k): v for k, v in table("credHelpers").items() if isinstance(v, str)}
    store = doc.get("credsStore", "")
    for name in (*helpers.values(), store):
        if name and not _HELPER_NAME.fullmatch(name):
            raise AuthError(f"auth file {path}: bad credential helper name {name!r}")
    return AuthFile(table("auths"), helpers, store if isinstance(store, str) else "")


def run_helper(helper: str, host: str, timeout: float = 30.0) -> Login:
    """``docker-credential-<helper> get`` for ``host`` (the docker-credential-helpers
    protocol: the server on stdin, ``{"Username", "Secret"}`` on stdout; the user
    ``<token>`` means the secret is an identity token)."""
    try:
        out = subprocess.run([f"docker-credential-{helper}", "get"], input=host.encode(),
                             capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise AuthError(f"credential helper docker-credential-{helper}: {type(e).__name__}") \
            from None
    if out.returncode != 0:
        text = out.stdout.decode(errors="replace").strip()
        if "credentials not found" in text.lower():
            return Login()
        raise AuthError(f"credential helper docker-credential-{helper} failed "
                        f"(exit {out.returncode})")
    try:
        doc = json.loads(out.stdout)
        user, secret = str(doc.get("Username", "")), str(doc.get("Secret", ""))
    except (ValueError, AttributeError):
        raise AuthError(f"credential helper docker-credential-{helper}: not JSON") from None
    if user == "<token>":
        return Login(identity_token=secret)
    return Login(user, secret)


def _decode_auth(value: str, where: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        raise AuthError(f"{where} is not base64 of 'username:password'") from None
    user, sep, password = decoded.partition(":")
    if not sep:
        raise AuthError(f"{where} is not base64 of 'username:password'")
    return user, password


def _file_login(entry: Any, key: str) -> Login:
    if not isinstance(entry, Mapping):
        raise AuthError(f"auth file entry {key!r} is not an object")
    user, password = "", ""
    if entry.get("auth"):
        user, password = _decode_auth(str(entry["auth"]), f"auth file entry {key!r}")
    elif entry.get("username") or entry.get("password"):
        user, password = str(entry.get("username", "")), str(entry.get("password", ""))
    return Login(user, password, str(entry.get("identitytoken", "") or ""),
                 str(entry.get("registrytoken", "") or ""))


def login_for(name: str, primary: str, creds: Credentials, auth_file: AuthFile,
              helper: Callable[[str, str], Login] = run_helper) -> Login:
    """Credentials for the repository ``name`` (``host/path`` of the endpoint tried).

    The request's credentials apply to the image's own registry ``primary`` (and to their
    ``server_address``); otherwise, as in containers-auth.json(5): the registry's
    ``credHelpers`` entry, then the most specific ``auths`` key (``host/ns/repo``,
    ``host/ns``, ``host``), then the ``credsStore`` helper.
    """
    host = name.split("/", 1)[0]
    if not creds.empty:
        targets = {primary}
        if creds.server_address:
            targets.add(_server_key(creds.server_address))
        if host in targets:
            return creds.login()
    if host in auth_file.cred_helpers:
        return helper(auth_file.cred_helpers[host], host)
    auths = {_server_key(k): v for k, v in auth_file.auths.items()}
    parts = name.split("/")
    for i in range(len(parts), 0, -1):
        key = "/".join(parts[:i])
        if key in auths:
            return _file_login(auths[key], key)
    if auth_file.creds_store:
        return helper(auth_file.creds_store, host)
    return Login()
