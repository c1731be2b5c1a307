"""Registry credentials: a PullImageRequest's AuthConfig and the global auth.json, merged.

They reach skopeo only as a private (0600) auth.json in the run dir that exists for the
duration of one skopeo call: never on a command line, in the store or in a log line.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any


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

    def entry(self) -> dict[str, str]:
        """The auth.json value for one registry."""
        if self.registry_token:
            raise AuthError(
                "auth.registry_token is not supported (skopeo would need it on its command "
                "line); use username/password, auth or identity_token"
            )
        out: dict[str, str] = {}
        if self.auth:
            try:
                decoded = base64.b64decode(self.auth, validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                raise AuthError("auth.auth is not base64 of 'username:password'") from None
            if ":" not in decoded:
                raise AuthError("auth.auth is not base64 of 'username:password'")
            out["auth"] = self.auth
        elif self.username or self.password:
            out["auth"] = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        if self.identity_token:
            out["identitytoken"] = self.identity_token
        return out

    def fingerprint(self) -> str:
        """Distinguishes credential sets (for single-flight keys) without revealing them."""
        h = hashlib.sha256()
        for part in (self.username, self.password, self.auth, self.identity_token,
                     self.registry_token):
            h.update(part.encode() + b"\0")
        return h.hexdigest()[:16] if not self.empty else ""


def _server_key(address: str) -> str:
    """auth.json keys: a host (``docker.io`` for Docker Hub's legacy URL forms)."""
    host = address.removeprefix("https://").removeprefix("http://").split("/", 1)[0]
    if host in ("index.docker.io", "registry-1.docker.io"):
        return "docker.io"
    return host


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


def build(registry: str, creds: Credentials, global_auths: Mapping[str, Any]) -> dict[str, Any]:
    """auth.json content: the global file's entries, the request's for ``registry`` on top."""
    auths = {_server_key(k): v for k, v in global_auths.items()}
    if not creds.empty:
        key = _server_key(creds.server_address) if creds.server_address else registry
        auths[key] = creds.entry()
        if key != registry:
            auths[registry] = creds.entry()
    return {"auths": auths}


@contextlib.contextmanager
def auth_file(directory: str, content: Mapping[str, Any]) -> Iterator[str]:
    """A 0600 file holding ``content`` that is removed when the block ends."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = os.path.join(directory, f"auth-{secrets.token_hex(8)}.json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(content, f)
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
