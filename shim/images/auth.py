"""Registry credentials: a PullImageRequest's AuthConfig and the global auth.json, merged
into the :class:`Login` the registry client uses for one endpoint.

They stay in the daemon's memory: never on a command line, in a file, the store or a log line.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shim.images.distribution import Login


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


def load_auth_file(path: str) -> dict[str, Any]:
    """The ``auths`` table of an auth.json (or Docker config.json); {} when absent."""
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise AuthError(f"auth file {path} cannot be read: {type(e).__name__}") from None
    auths = doc.get("auths", {}) if isinstance(doc, dict) else {}
    return dict(auths) if isinstance(auths, Mapping) else {}


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


def login_for(name: str, primary: str, creds: Credentials,
              global_auths: Mapping[str, Any]) -> Login:
    """Credentials for the repository ``name`` (``host/path`` of the endpoint tried).

    The request's credentials apply to the image's own registry ``primary`` (and to their
    ``server_address``); otherwise the auth file's most specific key wins, as in
    containers-auth.json(5): ``host/ns/repo``, ``host/ns``, ``host``.
    """
    host = name.split("/", 1)[0]
    if not creds.empty:
        targets = {primary}
        if creds.server_address:
            targets.add(_server_key(creds.server_address))
        if host in targets:
            return creds.login()
    auths = {_server_key(k): v for k, v in global_auths.items()}
    parts = name.split("/")
    for i in range(len(parts), 0, -1):
        key = "/".join(parts[:i])
        if key in auths:
            return _file_login(auths[key], key)
    return Login()
