"""A registry client for pulls: the OCI distribution API (Docker Registry HTTP API v2).

Just what a pull needs: manifests and blobs by GET, the token flow (``WWW-Authenticate:
Bearer`` → a token from the realm, with Basic credentials, an OAuth2 refresh token (identity
token) or anonymously), Basic auth, a registry token used as is, redirects (the
``Authorization`` header stays with the registry), TLS with ``certs.d`` CAs and client
certificates, and insecure registries (TLS unverified, then plain HTTP). Everything blocks:
call it from worker threads. Replaces skopeo because a pull then streams each layer from the
socket into its snapshot (docs/images.md has the measurements), and because credentials never
leave the process (no auth file, no command line).

Errors are :class:`RegistryError` with the TetherError class the kubelet should see; a read
that gets no byte for ``timeout`` seconds is :class:`Stalled`; :meth:`Session.cancel` (any
thread) aborts what is under way with :class:`Cancelled`.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import http.client
import json
import os
import re
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shim import errors
from shim.images.endpoints import Endpoint

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
USER_AGENT = "tether/0.1"
CERTS_DIRS = ("/etc/containers/certs.d", "/etc/docker/certs.d")
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
MAX_REDIRECTS = 5
ERROR_BODY_LIMIT = 64 << 10
MANIFEST_LIMIT = 4 << 20
_UNESCAPE = re.compile(r"\\(.)")
_CHALLENGE_PARAM = re.compile(r'\s*([a-zA-Z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?')


class RegistryError(Exception):
    """The registry refused or failed; ``kind`` is the TetherError class it maps to."""

    def __init__(self, kind: type[errors.TetherError], text: str) -> None:
        super().__init__(text)
        self.kind = kind
        self.text = text


class Stalled(Exception):
    """No byte arrived for ``seconds``."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no progress for {seconds:g}s")
        self.seconds = seconds


class Cancelled(Exception):
    """The session was cancelled (daemon shutdown, pull abandoned)."""


@dataclass(frozen=True, repr=False)
class Login:
    """Credentials for one registry; never printed."""

    username: str = ""
    password: str = ""
    identity_token: str = ""
    registry_token: str = ""

    def __repr__(self) -> str:
        return f"Login(username={self.username!r})"

    @property
    def basic(self) -> str:
        if not (self.username or self.password):
            return ""
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "bearer" or "basic"
    params: Mapping[str, str]


def parse_challenge(header: str) -> Challenge | None:
    """``Bearer realm="...",service="...",scope="..."`` → Challenge (first scheme only)."""
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params = {m.group(1).lower(): _UNESCAPE.sub(r"\1", m.group(2)) if m.group(2) is not None
              else m.group(3) for m in _CHALLENGE_PARAM.finditer(rest)}
    return Challenge(scheme.lower(), params)


def split_host(domain: str) -> tuple[str, int | None]:
    """``host[:port]`` / ``[v6]:port`` → (host, port or None)."""
    if domain.startswith("["):
        host, _, port = domain[1:].partition("]")
        return host, int(port[1:]) if port.startswith(":") else None
    host, sep, port = domain.rpartition(":")
    if sep and port.isdigit() and host:
        return host, int(port)
    return domain, None


def api_host(domain: str) -> str:
    """The host serving a registry's API: Docker Hub's name is not its API host."""
    return DOCKER_HUB_API if domain == DOCKER_HUB else domain


def registry_error(status: int, body: bytes, what: str) -> RegistryError:
    """Map an HTTP error answer (and its ``{"errors": [...]}`` body) to a RegistryError."""
    detail = ""
    try:
        doc = json.loads(body)
        errs = doc.get("errors") if isinstance(doc, dict) else None
        if isinstance(errs, list) and errs and isinstance(errs[0], dict):
            code = str(errs[0].get("code", "")).lower().replace("_", " ")
            msg = str(errs[0].get("message", ""))
            detail = f"{code}: {msg}" if msg and msg.lower() != code else code
    except ValueError:
        pass
    if not detail:
        detail = http.client.responses.get(status, "error").lower()
    text = f"{what}: {detail} (HTTP {status})"
    kind: type[errors.TetherError]
    if status == 404:
        kind = errors.NotFound
    elif status == 401:
        kind = errors.Unauthenticated
    elif status == 403:
        kind = errors.PermissionDenied
    elif status == 429 or status >= 500:
        kind = errors.Unavailable
    elif status == 400:
        kind = errors.InvalidArgument
    else:
        kind = errors.Internal
    return RegistryError(kind, text)


@dataclass(frozen=True, repr=False)
class Proxy:
    host: str
    port: int
    headers: Mapping[str, str]


def _no_proxy(host: str, no_proxy: str) -> bool:
    """``NO_PROXY`` as curl and Go read it: ``*``, hosts, ``.domain``/``domain`` suffixes."""
    host = host.lower()
    for entry in no_proxy.split(","):
        entry = entry.strip().lower()
        if entry == "*":
            return True
        entry = split_host(entry)[0].lstrip(".") if entry else ""
        if entry and (host == entry or host.endswith("." + entry)):
            return True
    return False


def proxy_for(scheme: str, host: str,
              environ: Mapping[str, str] | None = None) -> Proxy | None:
    """The daemon's ``HTTPS_PROXY``/``HTTP_PROXY`` (minus ``NO_PROXY`` hosts) for a registry
    connection, as containers/image honours them; tunnelled with CONNECT either way."""
    env = os.environ if environ is None else environ
    proxies = {k[:-len("_proxy")].lower(): v for k, v in env.items()
               if k.lower().endswith("_proxy") and v}
    url = proxies.get(scheme)
    if not url or _no_proxy(host, proxies.get("no", "")):
        return None
    parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
    if not parts.hostname:
        return None
    headers = {}
    if parts.username is not None:
        raw = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        headers["Proxy-Authorization"] = "Basic " + base64.b64encode(raw.encode()).decode()
    return Proxy(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), headers)


def _tls_context(host_dir: str | None, verify: bool) -> ssl.SSLContext:
    """Default CAs, plus ``<certs.d>/<host>/*.crt`` CAs and ``*.cert``/``*.key`` client pairs."""
    ctx = ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if host_dir is None:
        return ctx
    names = sorted(os.listdir(host_dir))
    for n in names:
        p = os.path.join(host_dir, n)
        if n.endswith(".crt"):
            ctx.load_verify_locations(cafile=p)
        elif n.endswith(".cert"):
            key = p[: -len(".cert")] + ".key"
            if os.path.exists(key):
                ctx.load_cert_chain(p, key)
    return ctx


class Client:
    """Per daemon: TLS settings and what was learnt about each registry (its scheme)."""

    def __init__(self, certs_dirs: Sequence[str] = CERTS_DIRS) -> None:
        self.certs_dirs = tuple(certs_dirs)
        self._schemes: dict[str, str] = {}
        self._tls: dict[tuple[str, bool], tuple[tuple[tuple[str, int], ...], ssl.SSLContext]] = {}
        self._lock = threading.Lock()

    def session(self, endpoint: Endpoint, login: Login, timeout: float) -> Session:
        return Session(self, endpoint, login, timeout)

    def tls(self, domain: str, verify: bool) -> ssl.SSLContext:
        """The TLS context for a registry, cached (loading the system CAs costs ~10 ms)
        until its certs.d directory changes."""
        host_dir = next((p for d in self.certs_dirs
                         if os.path.isdir(p := os.path.join(d, domain))), None)
        stamp = tuple((e.name, e.stat().st_mtime_ns) for e in os.scandir(host_dir)) \
            if host_dir else ()
        key = (domain, verify)
        with self._lock:
            cached = self._tls.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        ctx = _tls_context(host_dir, verify)
        with self._lock:
            self._tls[key] = (stamp, ctx)
        return ctx

    def known_scheme(self, domain: str) -> str | None:
        with self._lock:
            return self._schemes.get(domain)

    def learn_scheme(self, domain: str, scheme: str) -> None:
        with self._lock:
            self._schemes[domain] = scheme


class Session:
    """One repository at one endpoint for the duration of a pull.

    Thread-safe: layer workers share it. Each request takes a keep-alive connection from the
    pool (or opens one) and gives it back once its body has been read.
    """

    def __init__(self, client: Client, endpoint: Endpoint, login: Login, timeout: float) -> None:
        self.client = client
        self.endpoint = endpoint
        self.login = login
        self.timeout = timeout
        self.host = api_host(endpoint.domain)
        self._lock = threading.Lock()
        self._idle: list[http.client.HTTPConnection] = []
        self._live: set[http.client.HTTPConnection] = set()
        self._cancelled = False
        self._closed = False
        # A secure registry is always https; what was learnt applies to insecure ones only.
        self._scheme = client.known_scheme(endpoint.domain) if endpoint.insecure else "https"
        # Until the registry asks, nothing is sent; a registry token needs no round trip.
        self._authorization = f"Bearer {login.registry_token}" if login.registry_token else ""
        self._auth_lock = threading.Lock()

    # --- public ------------------------------------------------------------------------------
    def manifest(self, reference: str) -> tuple[bytes, str]:
        """The manifest or index at tag/digest ``reference``: (raw bytes, media type)."""
        what = f"manifest {self.endpoint.name}:{reference}" if not reference.startswith(
            "sha256:") else f"manifest {self.endpoint.name}@{reference}"
        resp = self._get(f"/v2/{self.endpoint.path}/manifests/{reference}",
                         {"Accept": ", ".join(MANIFEST_TYPES)}, what)
        with self._body(resp) as r:
            data = r.read(MANIFEST_LIMIT + 1)
        if len(data) > MANIFEST_LIMIT:
            raise RegistryError(errors.InvalidArgument, f"{what}: larger than {MANIFEST_LIMIT}")
        ctype = (resp.getheader("Content-Type") or "").split(";")[0].strip()
        return data, ctype

    def open_blob(self, digest: str) -> BlobStream:
        resp = self._get(f"/v2/{self.endpoint.path}/blobs/{digest}", {},
                         f"blob {self.endpoint.name}@{digest}")
        return BlobStream(self, resp)

    def cancel(self) -> None:
        """Abort every request under way (from any thread); later ones raise Cancelled."""
        with self._lock:
            self._cancelled = True
            conns = list(self._live) + self._idle
            self._idle = []
        for c in conns:
            sock = c.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Close idle connections; those still in use close when their request ends."""
        with self._lock:
            self._closed = True
            conns, self._idle = self._idle, []
        for c in conns:
            c.close()

    # --- connections -------------------------------------------------------------------------
    def _check(self) -> None:
        if self._cancelled:
            raise Cancelled()

    def _connect(self, scheme: str, domain: str, verify: bool) -> http.client.HTTPConnection:
        host, port = split_host(domain)
        proxy = proxy_for(scheme, host)
        target_host, target_port = (proxy.host, proxy.port) if proxy else (host, port)
        # certs.d is keyed by the registry's name; a token realm or blob store has its own
        certs_for = self.endpoint.domain if domain == self.host else domain
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = http.client.HTTPSConnection(
                target_host, target_port, timeout=self.timeout,
                context=self.client.tls(certs_for, verify))
        else:
            conn = http.client.HTTPConnection(target_host, target_port, timeout=self.timeout)
        if proxy:
            conn.set_tunnel(host, port or (443 if scheme == "https" else 80), proxy.headers)
        return conn

    def _take(self) -> http.client.HTTPConnection:
        with self._lock:
            self._check()
            conn = self._idle.pop() if self._idle else None
            if conn is None:
                assert self._scheme is not None
                conn = self._connect(self._scheme, self.host, not self.endpoint.insecure)
            self._live.add(conn)
            return conn

    def _dial(self, conn: http.client.HTTPConnection, domain: str) -> None:
        """Connect now rather than inside ``request()``: a connect timeout means an unreachable
        registry (Unavailable, so the next search registry is tried), not a stall; and a
        cancel that came while connecting is seen before any byte is read."""
        if conn.sock is None:
            try:
                conn.connect()
            except TimeoutError:
                raise RegistryError(errors.Unavailable,
                                    f"{domain}: i/o timeout while connecting") from None
        self._check()

    def give_back(self, conn: http.client.HTTPConnection, reusable: bool) -> None:
        with self._lock:
            self._live.discard(conn)
            if reusable and not (self._cancelled or self._closed):
                self._idle.append(conn)
                return
        conn.close()

    # --- requests ----------------------------------------------------------------------------
    def _send(self, path: str, headers: Mapping[str, str]) -> tuple[
            http.client.HTTPConnection, http.client.HTTPResponse]:
        """One GET on a pooled connection (a stale keep-alive one is retried once)."""
        for attempt in (0, 1):
            conn = self._take()
            fresh = conn.sock is None
            try:
                self._dial(conn, self.host)
                conn.request("GET", path, headers=dict(headers))
                return conn, conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.give_back(conn, False)
                self._check()
                if fresh or attempt:
                    raise
                with self._lock:  # the registry dropped its idle connections: so do we
                    stale, self._idle = self._idle, []
                for c in stale:
                    c.close()
            except BaseException:
                self.give_back(conn, False)
                raise
        raise AssertionError("unreachable")

    def _pick_scheme(self, path: str, headers: Mapping[str, str]) -> tuple[
            http.client.HTTPConnection, http.client.HTTPResponse]:
        """The first request to a registry: https; for an insecure one, then plain http."""
        schemes = ["https", "http"] if self.endpoint.insecure else ["https"]
        last: BaseException | None = None
        for scheme in schemes:
            with self._lock:
                self._scheme = scheme
            try:
                out = self._send(path, headers)
            except (OSError, http.client.HTTPException) as e:
                last = e
                self._check()
                continue
            self.client.learn_scheme(self.endpoint.domain, scheme)
            return out
        assert last is not None
        raise last

    def _get(self, path: str, headers: Mapping[str, str], what: str) -> http.client.HTTPResponse:
        """GET with auth handshakes and redirects; returns a 2xx response (body unread)."""
        tried_auth = bool(self.login.registry_token)
        while True:
            self._check()
            hdrs = {"User-Agent": USER_AGENT, **headers}
            auth = self._authorization
            if auth:
                hdrs["Authorization"] = auth
            try:
                if self._scheme is None:
                    conn, resp = self._pick_scheme(path, hdrs)
                else:
                    conn, resp = self._send(path, hdrs)
            except (OSError, http.client.HTTPException) as e:
                self._check()
                raise _io_error(e, self.endpoint.domain, self.timeout) from None
            if resp.status == 401 and not tried_auth:
                challenge = parse_challenge(resp.getheader("WWW-Authenticate") or "")
                self._finish(conn, resp)
                tried_auth = True
                self._authenticate(challenge, auth, what)
                continue
            if resp.status in (301, 302, 303, 307, 308):
                location = resp.getheader("Location") or ""
                self._finish(conn, resp)
                return self._redirect(f"{self._scheme}://{self.host}{path}", location,
                                      headers, what)
            if 200 <= resp.status < 300:
                resp.conn = conn  # type: ignore[attr-defined]
                return resp
            body = self._finish(conn, resp, keep=True)
            err = registry_error(resp.status, body, what)
            if resp.status == 401 and self.login.registry_token:
                err = RegistryError(errors.Unauthenticated,
                                    f"{what}: the registry refused the registry token")
            raise err

    def _finish(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse,
                keep: bool = False, pooled: bool = True) -> bytes:
        """Read (a bounded part of) a body we do not use, and give the connection back."""
        try:
            body = resp.read(ERROR_BODY_LIMIT)
            reusable = resp.isclosed() and pooled
        except (OSError, http.client.HTTPException):
            body, reusable = b"", False
        if not reusable:
            resp.close()
        self.give_back(conn, reusable)
        return body if keep else b""

    def _redirect(self, base: str, location: str, headers: Mapping[str, str],
                  what: str) -> http.client.HTTPResponse:
        """Blob downloads often redirect to storage: follow without our Authorization.
        ``base`` is the URL that answered with ``location`` (which may be relative)."""
        for _ in range(MAX_REDIRECTS):
            url = urllib.parse.urlsplit(urllib.parse.urljoin(base, location))
            same = url.netloc == self.host and url.scheme == self._scheme
            hdrs = {"User-Agent": USER_AGENT, **headers}
            if same and self._authorization:
                hdrs["Authorization"] = self._authorization
            conn = self._connect(url.scheme, url.netloc, not self.endpoint.insecure or not same)
            with self._lock:
                self._check()
                self._live.add(conn)
            path = url.path + (f"?{url.query}" if url.query else "")
            try:
                self._dial(conn, url.netloc)
                conn.request("GET", path, headers=hdrs)
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                self.give_back(conn, False)
                self._check()
                raise _io_error(e, url.netloc, self.timeout) from None
            if resp.status in (301, 302, 303, 307, 308):
                location = resp.getheader("Location") or ""
                base = url.geturl()
                self._finish(conn, resp, pooled=False)
                continue
            if 200 <= resp.status < 300:
                resp.conn = conn  # type: ignore[attr-defined]
                resp.pooled = False  # type: ignore[attr-defined]
                return resp
            body = self._finish(conn, resp, keep=True, pooled=False)
            raise registry_error(resp.status, body, what)
        raise RegistryError(errors.Unavailable, f"{what}: too many redirects")

    @contextlib.contextmanager
    def _body(self, resp: http.client.HTTPResponse) -> Any:
        try:
            yield _Reader(self, resp)
        finally:
            _release(self, resp)

    # --- auth --------------------------------------------------------------------------------
    def _authenticate(self, challenge: Challenge | None, sent: str, what: str) -> None:
        """Answer a 401: Basic with the credentials, or a token from the Bearer realm."""
        with self._auth_lock:
            if self._authorization != sent:
                return  # another thread answered the challenge meanwhile
            if challenge is None or challenge.scheme not in ("basic", "bearer"):
                raise RegistryError(errors.Unauthenticated,
                                    f"{what}: authentication required (no usable challenge)")
            if challenge.scheme == "basic":
                if not self.login.basic:
                    raise RegistryError(errors.Unauthenticated,
                                        f"{what}: authentication required")
                self._authorization = self.login.basic
                return
            self._authorization = "Bearer " + self._token(challenge, what)

    def _token(self, challenge: Challenge, what: str) -> str:
        realm = challenge.params.get("realm", "")
        url = urllib.parse.urlsplit(realm)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise RegistryError(errors.Unavailable, f"{what}: bad token realm {realm!r}")
        scope = challenge.params.get("scope") or f"repository:{self.endpoint.path}:pull"
        service = challenge.params.get("service", "")
        verify = not (self.endpoint.insecure and url.netloc == self.host)
        conn = self._connect(url.scheme, url.netloc, verify)
        with self._lock:
            self._check()
            self._live.add(conn)
        hdrs = {"User-Agent": USER_AGENT}
        try:
            self._dial(conn, url.netloc)
            if self.login.identity_token:
                form = urllib.parse.urlencode({
                    "grant_type": "refresh_token", "refresh_token": self.login.identity_token,
                    "service": service, "scope": scope, "client_id": "tether",
                })
                hdrs["Content-Type"] = "application/x-www-form-urlencoded"
                path = (url.path or "/") + (f"?{url.query}" if url.query else "")
                conn.request("POST", path, body=form, headers=hdrs)
            else:
                query = urllib.parse.urlencode(
                    [(k, v) for k, v in (("service", service), ("scope", scope)) if v])
                if self.login.basic:
                    hdrs["Authorization"] = self.login.basic
                path = (url.path or "/") + "?" + "&".join(x for x in (url.query, query) if x)
                conn.request("GET", path, headers=hdrs)
            resp = conn.getresponse()
            body = resp.read(ERROR_BODY_LIMIT)
        except (OSError, http.client.HTTPException) as e:
            self._check()
            raise _io_error(e, url.netloc, self.timeout) from None
        finally:
            self.give_back(conn, False)
        if resp.status in (401, 403):
            raise RegistryError(
                errors.Unauthenticated,
                f"{what}: authentication required: the token server refused the credentials"
                if (self.login.basic or self.login.identity_token)
                else f"{what}: authentication required",
            )
        if resp.status != 200:
            raise registry_error(resp.status, body, f"{what}: token request")
        try:
            doc = json.loads(body)
            token = doc.get("token") or doc.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(errors.Unavailable, f"{what}: the token server sent no token")
        return token


class _Reader:
    def __init__(self, session: Session, resp: http.client.HTTPResponse) -> None:
        self.session = session
        self.resp = resp

    def read(self, n: int = -1) -> bytes:
        self.session._check()
        try:
            data = self.resp.read(n if n >= 0 else None)
        except TimeoutError:
            self.session._check()
            raise Stalled(self.session.timeout) from None
        except (OSError, http.client.HTTPException) as e:
            self.session._check()
            raise _io_error(e, self.session.endpoint.domain, self.session.timeout) from None
        if not data and n != 0:
            self.session._check()  # a cancel shuts the socket: that reads as an early end
            if self.resp.length:  # http.client returns b"" short of Content-Length
                raise RegistryError(errors.Unavailable, f"{self.session.endpoint.domain}: "
                                    "connection closed mid-body")
        return data


def _release(session: Session, resp: http.client.HTTPResponse) -> None:
    conn = getattr(resp, "conn", None)
    done = resp.isclosed()
    if not done:
        resp.close()
    if conn is not None:
        if getattr(resp, "pooled", True):
            session.give_back(conn, done)
        else:
            session.give_back(conn, False)


class BlobStream:
    """A blob's body as it arrives (``read(n)``); ``close`` returns the connection."""

    def __init__(self, session: Session, resp: http.client.HTTPResponse) -> None:
        self._reader = _Reader(session, resp)
        self._resp = resp
        self._session = session
        self._closed = False

    def read(self, n: int = -1) -> bytes:
        return self._reader.read(n)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _release(self._session, self._resp)


def _io_error(e: BaseException, domain: str, timeout: float) -> Exception:
    """A socket/TLS/HTTP failure → Stalled or RegistryError(Unavailable) with a clear text."""
    if isinstance(e, TimeoutError):
        return Stalled(timeout)
    if isinstance(e, ssl.SSLCertVerificationError):
        return RegistryError(
            errors.Unavailable,
            f"{domain}: x509: certificate not trusted: {e.verify_message or e.reason} (a "
            f"private CA goes in <images.certs_dirs>/{domain}/*.crt)")
    if isinstance(e, ssl.SSLError):
        reason = (e.reason or "").upper()
        if "ALERT_BAD_CERTIFICATE" in reason or "CERTIFICATE_REQUIRED" in reason:
            return RegistryError(
                errors.Unavailable,
                f"{domain}: TLS: the registry refused the client certificate or wants one "
                f"({e.reason}; put it in <images.certs_dirs>/{domain}/*.cert and *.key)")
        if "WRONG_VERSION_NUMBER" in reason or "RECORD_LAYER" in reason or \
                "PACKET_LENGTH_TOO_LONG" in reason or "HTTP_REQUEST" in reason:
            return RegistryError(
                errors.Unavailable,
                f"{domain}: http: server gave HTTP response to HTTPS client (a plain-HTTP "
                "registry must be listed in images.insecure_registries or be insecure in "
                "registries.conf)")
        return RegistryError(errors.Unavailable, f"{domain}: TLS: {e.reason or e}")
    if isinstance(e, socket.gaierror):
        return RegistryError(errors.Unavailable, f"{domain}: no such host ({e.strerror})")
    if isinstance(e, ConnectionRefusedError):
        return RegistryError(errors.Unavailable, f"{domain}: connection refused")
    if isinstance(e, OSError) and e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return RegistryError(errors.Unavailable, f"{domain}: network is unreachable")
    if isinstance(e, http.client.RemoteDisconnected | ConnectionResetError | BrokenPipeError):
        return RegistryError(errors.Unavailable, f"{domain}: connection closed by the registry")
    if isinstance(e, OSError) and str(e).startswith("Tunnel connection failed"):
        return RegistryError(errors.Unavailable, f"{domain}: the proxy (HTTP(S)_PROXY) "
                             f"refused the tunnel: {str(e).split(':', 1)[1].strip()}")
    if isinstance(e, http.client.IncompleteRead):
        return RegistryError(errors.Unavailable, f"{domain}: connection closed mid-body")
    return RegistryError(errors.Unavailable, f"{domain}: {type(e).__name__}: {e}")
