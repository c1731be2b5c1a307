"""A token-auth front for a test registry: the Docker/OCI distribution Bearer token flow.

``TokenGate`` listens on 127.0.0.1:<free port> (plain HTTP) in front of an upstream
registry that has no auth (``host:port``), and behaves like a registry with a token server
(Docker Hub, GHCR, Harbor...):

* ``/v2/...`` (GET, HEAD) needs ``Authorization: Bearer <t>``, ``t`` a token this gate
  issued (and not expired) or the pre-shared ``registry_token``. Otherwise: 401, a
  ``WWW-Authenticate: Bearer realm="http://127.0.0.1:<port>/token",service="tether-gate",
  scope="repository:<repo>:pull"`` challenge (no scope for ``/v2/`` itself) and a
  registry-style JSON error. A valid token of a user that may not read the repository:
  403 ``DENIED``. Otherwise the request is passed on to the upstream (method, path, query,
  Accept, Range) and the answer streamed back (status, Content-Type, Content-Length,
  Docker-Content-Digest, Location rewritten to the gate, ...).
* ``/token``: GET with Basic auth (user/password) -> ``{"token": ..., "expires_in": 300}``;
  GET without auth -> 401 unless ``allow_anonymous``; POST form
  ``grant_type=refresh_token&refresh_token=<identity_token>`` or
  ``grant_type=password&username=..&password=..`` -> ``{"access_token": ...}``. Tokens are
  bound to their user, whose ``allowed`` repositories (default: all) are checked.

What it saw is recorded without secrets: ``requests`` (method, path, auth scheme, status)
and ``token_requests`` (method, grant, user, service, scope, client_id, status).
``secrets()`` lists every secret it knows or issued (for leak checks).

    with TokenGate(registry.host, users={"alice": "pw"}) as gate:
        ref = gate.ref("busybox")          # "127.0.0.1:PORT/busybox:latest"
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import http.client
import json
import re
import secrets
import socket
import threading
import time
import urllib.parse
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

SERVICE = "tether-gate"
CHUNK = 64 * 1024
ANONYMOUS = ""  # the user of anonymous tokens

_REPO_RE = re.compile(r"^/v2/(?P<name>.+?)/(?:manifests|blobs|tags|referrers)(?:/|$)")
# upstream answer headers passed back to the client
_COPY_HEADERS = (
    "Content-Type", "Content-Length", "Docker-Content-Digest", "Location", "Content-Range",
    "Accept-Ranges", "Docker-Distribution-Api-Version", "Etag", "Link",
)


@dataclass(frozen=True)
class GateRequest:
    """A ``/v2/`` request: ``scheme`` is the Authorization scheme ("Bearer", "Basic", "")."""

    method: str
    path: str
    scheme: str
    status: int


@dataclass(frozen=True)
class TokenRequest:
    """A ``/token`` request. ``grant``: "basic" (GET with Basic auth), "anonymous" (GET without
    auth), "refresh_token", "password", or what else the POST's grant_type said."""

    method: str
    grant: str
    user: str  # the user named (or the identity token's user); "" when none
    service: str
    scope: tuple[str, ...]
    client_id: str
    status: int


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message}]}).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins the handler threads
    block_on_close = True
    gate: TokenGate

    def __init__(self, gate: TokenGate) -> None:
        self.gate = gate
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tether-token-gate/1"
    timeout = 60  # an idle keep-alive connection ends after this
    server: _Server
    _scheme = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the records are what tests look at

    # ------------------------------------------------------------------ dispatch

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        try:
            if path == "/token":
                self._token()
            elif path == "/v2" or path.startswith("/v2/"):
                self._registry(path)
            else:
                self._drain_body()
                self._send_json(404, _error_body("NOT_FOUND", "not found"))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # ------------------------------------------------------------------ helpers

    def _drain_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > 1 << 20:
            self.close_connection = True
            return b""
        return self.rfile.read(length) if length else b""

    def _send_json(self, status: int, body: bytes,
                   extra: Iterable[tuple[str, str]] = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _auth(self) -> tuple[str, str]:
        """(scheme, credentials) of the Authorization header; ("", "") without one."""
        value = self.headers.get("Authorization") or ""
        scheme, _, cred = value.strip().partition(" ")
        if scheme.lower() == "bearer":
            return "Bearer", cred.strip()
        if scheme.lower() == "basic":
            return "Basic", cred.strip()
        return (scheme[:20], "") if scheme else ("", "")

    # ------------------------------------------------------------------ /v2/

    def _registry(self, path: str) -> None:
        gate = self.server.gate
        self._drain_body()
        scheme, cred = self._auth()
        m = _REPO_RE.match(path)
        repo = m.group("name") if m else None
        self._scheme = scheme
        self._registry_answer(gate, repo, scheme, cred)

    def _note(self, status: int) -> None:
        """Record this /v2/ request (before its answer goes out)."""
        self.server.gate._record(GateRequest(self.command, self.path, self._scheme, status))

    def _registry_answer(self, gate: TokenGate, repo: str | None, scheme: str,
                         cred: str) -> None:
        if self.command not in ("GET", "HEAD"):
            self._note(405)
            self._send_json(405, _error_body("UNSUPPORTED", "the gate is read-only"))
            return
        user = gate._token_user(cred) if scheme == "Bearer" else None
        if user is None:
            challenge = f'Bearer realm="{gate.realm}",service="{SERVICE}"'
            if repo is not None:
                challenge += f',scope="repository:{repo}:pull"'
            if scheme == "Bearer":
                challenge += ',error="invalid_token"'
            self._note(401)
            self._send_json(401, _error_body("UNAUTHORIZED", "authentication required"),
                            [("WWW-Authenticate", challenge)])
            return
        if repo is not None and not gate.may_read(user, repo):
            self._note(403)
            self._send_json(403, _error_body(
                "DENIED", "requested access to the resource is denied"))
            return
        self._proxy(gate)

    def _proxy(self, gate: TokenGate) -> None:
        conn = http.client.HTTPConnection(gate.upstream_host, gate.upstream_port, timeout=30)
        try:
            headers = {"Host": gate.upstream}
            accept = self.headers.get_all("Accept") or []
            if accept:
                headers["Accept"] = ", ".join(accept)
            for name in ("Range", "If-None-Match"):
                value = self.headers.get(name)
                if value:
                    headers[name] = str(value)
            try:
                conn.request(self.command, self.path, headers=headers)
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                self.close_connection = True
                self._note(502)
                self._send_json(502, _error_body("UNAVAILABLE", f"upstream: {type(e).__name__}"))
                return
            self._note(resp.status)
            self.send_response(resp.status)
            length = resp.getheader("Content-Length")
            for name in _COPY_HEADERS:
                value = resp.getheader(name)
                if value is None:
                    continue
                if name == "Location":
                    value = gate._rewrite_location(value)
                self.send_header(name, value)
            no_body = (self.command == "HEAD" or resp.status in (204, 304)
                       or 100 <= resp.status < 200)
            chunked = length is None and not no_body
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if no_body:
                return
            while True:  # stream: never the whole blob in memory
                try:
                    data = resp.read(CHUNK)
                except (OSError, http.client.HTTPException):
                    self.close_connection = True  # the client sees a short body
                    return
                if not data:
                    break
                if chunked:
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                else:
                    self.wfile.write(data)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
            elif resp.length:  # upstream cut short: fewer bytes than Content-Length
                self.close_connection = True
        finally:
            conn.close()

    # ------------------------------------------------------------------ /token

    def _token(self) -> None:
        gate = self.server.gate
        split = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(split.query)
        if self.command == "POST":
            body = self._drain_body()
            form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
            params = {**query, **form}
        elif self.command == "GET":
            self._drain_body()
            params = query
        else:
            self._send_json(405, _error_body("UNSUPPORTED", "GET or POST"))
            return

        def one(name: str) -> str:
            return (params.get(name) or [""])[0]

        service, client_id = one("service"), one("client_id")
        scope = tuple(params.get("scope") or ())
        user = ""
        if self.command == "GET":
            scheme, cred = self._auth()
            if scheme == "Basic":
                grant = "basic"
                try:
                    user, _, password = base64.b64decode(cred, validate=True).decode().partition(
                        ":")
                except (binascii.Error, UnicodeDecodeError):
                    user, password = "", ""
                ok = gate._check_password(user, password)
            else:  # no credentials (another scheme counts as none)
                grant = "anonymous" if not scheme else scheme.lower()
                ok = gate.allow_anonymous
                user = ANONYMOUS
            field = "token"
        else:
            grant = one("grant_type")
            field = "access_token"
            if grant == "refresh_token":
                found = gate._identity_user(one("refresh_token"))
                ok = found is not None
                user = found or ""
            elif grant == "password":
                user = one("username")
                ok = gate._check_password(user, one("password"))
            else:
                gate._record_token(TokenRequest(self.command, grant[:40] or "(none)", "",
                                                service, scope, client_id, 400))
                self._send_json(400, json.dumps({"error": "unsupported_grant_type"}).encode())
                return
        if service and service != SERVICE:
            status = 400
            body = json.dumps({"error": "invalid_request",
                               "error_description": "unknown service"}).encode()
        elif not ok:
            status = 401
            body = (_error_body("UNAUTHORIZED", "authentication required")
                    if self.command == "GET" else json.dumps({"error": "invalid_grant"}).encode())
        else:
            status = 200
            answer: dict[str, Any] = {field: gate._issue(user), "expires_in": int(gate.token_ttl),
                                      "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                 time.gmtime())}
            if scope:
                answer["scope"] = " ".join(scope)
            body = json.dumps(answer).encode()
        # recorded before the answer goes out: a client done with it finds it recorded
        gate._record_token(TokenRequest(self.command, grant, user, service, scope, client_id,
                                        status))
        self._send_json(status, body)


class TokenGate:
    """See the module docstring. ``allowed[user]``: the repositories ``user`` may read (a user
    not in it may read all). The identity and registry tokens act as ``identity_user`` /
    ``registry_token_user`` (default: the first user)."""

    def __init__(
        self,
        upstream: str,
        *,
        users: Mapping[str, str] | None = None,
        allowed: Mapping[str, Collection[str]] | None = None,
        identity_token: str | None = None,
        identity_user: str | None = None,
        registry_token: str | None = None,
        registry_token_user: str | None = None,
        allow_anonymous: bool = False,
        token_ttl: float = 300,
    ) -> None:
        self.upstream = upstream
        host, port = upstream.rsplit(":", 1)
        self.upstream_host, self.upstream_port = host, int(port)
        self.users: dict[str, str] = dict(users or {})
        first = next(iter(self.users), ANONYMOUS)
        self.allowed: dict[str, set[str]] = {u: set(r) for u, r in (allowed or {}).items()}
        self.identity_token = identity_token
        self.identity_user = identity_user if identity_user is not None else first
        self.registry_token = registry_token
        self.registry_token_user = (registry_token_user if registry_token_user is not None
                                    else first)
        self.allow_anonymous = allow_anonymous
        self.token_ttl = token_ttl
        self.requests: list[GateRequest] = []
        self.token_requests: list[TokenRequest] = []
        self._tokens: dict[str, tuple[str, float]] = {}  # token -> (user, expiry)
        self._lock = threading.Lock()
        self._server = _Server(self)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name=f"token-gate-{self.port}", daemon=True)
        self._thread.start()
        self._closed = False

    # ------------------------------------------------------------------ addresses

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def realm(self) -> str:
        return f"{self.url}/token"

    def ref(self, name: str, tag: str = "latest") -> str:
        """``127.0.0.1:PORT/<name>:<tag>`` through the gate."""
        return f"{self.host}/{name}:{tag}"

    # ------------------------------------------------------------------ configuration

    def add_user(self, user: str, password: str, repos: Collection[str] | None = None) -> None:
        """Another user; ``repos``: what it may read (None: all)."""
        with self._lock:
            self.users[user] = password
            if repos is None:
                self.allowed.pop(user, None)
            else:
                self.allowed[user] = set(repos)

    def may_read(self, user: str, repo: str) -> bool:
        with self._lock:
            allowed = self.allowed.get(user)
        return allowed is None or repo in allowed

    # ------------------------------------------------------------------ records

    def scheme_counts(self) -> dict[str, int]:
        """How many /v2/ requests came with each Authorization scheme."""
        out: dict[str, int] = {}
        with self._lock:
            for r in self.requests:
                out[r.scheme] = out.get(r.scheme, 0) + 1
        return out

    def grants(self, status: int | None = 200) -> list[str]:
        """The ``grant`` of each token request (of that status; None: all)."""
        with self._lock:
            return [t.grant for t in self.token_requests if status is None or t.status == status]

    def clear_records(self) -> None:
        with self._lock:
            self.requests.clear()
            self.token_requests.clear()

    @property
    def issued_tokens(self) -> list[str]:
        with self._lock:
            return list(self._tokens)

    def secrets(self) -> list[str]:
        """Every secret the gate knows or issued, as it appears on the wire (for leak checks):
        passwords, base64 ``user:password``, identity and registry tokens, issued tokens."""
        with self._lock:
            out = [*self._tokens]
            for user, password in self.users.items():
                out.append(password)
                out.append(base64.b64encode(f"{user}:{password}".encode()).decode())
        out += [t for t in (self.identity_token, self.registry_token) if t]
        return out

    def _record(self, r: GateRequest) -> None:
        with self._lock:
            self.requests.append(r)

    def _record_token(self, r: TokenRequest) -> None:
        with self._lock:
            self.token_requests.append(r)

    # ------------------------------------------------------------------ tokens

    def _check_password(self, user: str, password: str) -> bool:
        with self._lock:
            want = self.users.get(user)
        return bool(user) and want is not None and secrets.compare_digest(
            want.encode(), password.encode())

    def _identity_user(self, token: str) -> str | None:
        if self.identity_token and token and secrets.compare_digest(
                self.identity_token.encode(), token.encode()):
            return self.identity_user
        return None

    def _issue(self, user: str) -> str:
        token = "gt-" + secrets.token_hex(24)
        with self._lock:
            self._tokens[token] = (user, time.monotonic() + self.token_ttl)
        return token

    def _token_user(self, token: str) -> str | None:
        """The user a Bearer token acts as, None when it is not valid."""
        if not token:
            return None
        if self.registry_token and secrets.compare_digest(
                self.registry_token.encode(), token.encode()):
            return self.registry_token_user
        with self._lock:
            entry = self._tokens.get(token)
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def _rewrite_location(self, value: str) -> str:
        parts = urllib.parse.urlsplit(value)
        if parts.netloc in (self.upstream, f"localhost:{self.upstream_port}"):
            return urllib.parse.urlunsplit(parts._replace(netloc=self.host))
        return value

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Stop serving, end open connections, join every thread."""
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._thread.join(10)
        self._server.drop_connections()
        self._server.server_close()  # joins the handler threads

    def __enter__(self) -> TokenGate:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
