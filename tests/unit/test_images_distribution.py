"""The registry client: challenge parsing, error mapping, and the HTTP flows against an
in-process registry on 127.0.0.1 (auth handshakes, redirects, keep-alive, stalls, cancel)."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shim import errors
from shim.images.distribution import (
    MANIFEST_TYPES,
    USER_AGENT,
    Cancelled,
    Client,
    Login,
    RegistryError,
    Session,
    Stalled,
    _io_error,
    api_host,
    parse_challenge,
    registry_error,
    split_host,
)
from shim.images.endpoints import Endpoint

DIGEST = "sha256:" + "ab" * 32
MANIFEST = b'{"schemaVersion": 2}'
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ANONYMOUS = Login()


# --- pure helpers ----------------------------------------------------------------------------
def test_parse_challenge_bearer_quoted() -> None:
    c = parse_challenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                        'scope="repository:library/busybox:pull"')
    assert c is not None and c.scheme == "bearer"
    assert dict(c.params) == {"realm": "https://auth.docker.io/token",
                              "service": "registry.docker.io",
                              "scope": "repository:library/busybox:pull"}


def test_parse_challenge_unquoted_and_spaces() -> None:
    c = parse_challenge("Bearer realm=https://r.io/token, service=r.io ,  scope=x")
    assert c is not None
    assert dict(c.params) == {"realm": "https://r.io/token", "service": "r.io", "scope": "x"}
    c = parse_challenge('BEARER Realm="x"')
    assert c is not None and c.scheme == "bearer" and dict(c.params) == {"realm": "x"}


def test_parse_challenge_escapes_and_commas() -> None:
    c = parse_challenge(r'Bearer realm="a\"b",scope="repository:a:pull,push",service="s"')
    assert c is not None
    assert dict(c.params) == {"realm": 'a"b', "scope": "repository:a:pull,push", "service": "s"}
    c = parse_challenge('Bearer scope="repository:a:pull repository:b:pull",realm="r"')
    assert c is not None and c.params["scope"] == "repository:a:pull repository:b:pull"
    assert c.params["realm"] == "r"


def test_parse_challenge_escaped_backslash() -> None:
    c = parse_challenge(r'Bearer realm="a\\b"')
    assert c is not None and c.params["realm"] == "a\\b"


def test_parse_challenge_basic_and_empty() -> None:
    c = parse_challenge('Basic realm="Registry Realm"')
    assert c is not None and c.scheme == "basic" and dict(c.params) == {"realm": "Registry Realm"}
    c = parse_challenge("Bearer")
    assert c is not None and c.scheme == "bearer" and dict(c.params) == {}
    assert parse_challenge("") is None
    assert parse_challenge("   ") is None


@pytest.mark.parametrize(("domain", "want"), [
    ("r.io", ("r.io", None)),
    ("r.io:5000", ("r.io", 5000)),
    ("127.0.0.1:443", ("127.0.0.1", 443)),
    ("localhost", ("localhost", None)),
    ("[::1]", ("::1", None)),
    ("[::1]:5000", ("::1", 5000)),
    ("[fe80::1:2]:80", ("fe80::1:2", 80)),
])
def test_split_host(domain: str, want: tuple[str, int | None]) -> None:
    assert split_host(domain) == want


def test_api_host() -> None:
    assert api_host("docker.io") == "registry-1.docker.io"
    assert api_host("quay.io") == "quay.io"
    assert api_host("127.0.0.1:5000") == "127.0.0.1:5000"
    assert api_host("registry-1.docker.io") == "registry-1.docker.io"


def _errors_body(code: str, message: str = "") -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()


@pytest.mark.parametrize(("status", "body", "kind", "text"), [
    (404, _errors_body("MANIFEST_UNKNOWN", "manifest unknown"), errors.NotFound,
     "m: manifest unknown (HTTP 404)"),
    (404, _errors_body("NAME_UNKNOWN", "repository name not known to registry"), errors.NotFound,
     "m: name unknown: repository name not known to registry (HTTP 404)"),
    (401, _errors_body("UNAUTHORIZED", "authentication required"), errors.Unauthenticated,
     "m: unauthorized: authentication required (HTTP 401)"),
    (403, _errors_body("DENIED", "requested access to the resource is denied"),
     errors.PermissionDenied, "m: denied: requested access to the resource is denied (HTTP 403)"),
    (429, _errors_body("TOOMANYREQUESTS", "slow down"), errors.Unavailable,
     "m: toomanyrequests: slow down (HTTP 429)"),
    (429, b"", errors.Unavailable, "m: too many requests (HTTP 429)"),
    (500, b"<html>oops</html>", errors.Unavailable, "m: internal server error (HTTP 500)"),
    (502, b"", errors.Unavailable, "m: bad gateway (HTTP 502)"),
    (503, b"\xff\xfe not utf-8", errors.Unavailable, "m: service unavailable (HTTP 503)"),
    (400, _errors_body("MANIFEST_INVALID"), errors.InvalidArgument,
     "m: manifest invalid (HTTP 400)"),
    (400, b"[1, 2]", errors.InvalidArgument, "m: bad request (HTTP 400)"),
    (404, b'{"errors": []}', errors.NotFound, "m: not found (HTTP 404)"),
    (404, b'{"errors": ["x"]}', errors.NotFound, "m: not found (HTTP 404)"),
    (405, b"", errors.Internal, "m: method not allowed (HTTP 405)"),
    (299, b"", errors.Internal, "m: error (HTTP 299)"),
])
def test_registry_error(status: int, body: bytes, kind: type[errors.TetherError],
                        text: str) -> None:
    e = registry_error(status, body, "m")
    assert isinstance(e, RegistryError)
    assert e.kind is kind
    assert e.text == text and str(e) == text


def _ssl_error(reason: str) -> ssl.SSLError:
    e = ssl.SSLError(1, f"[SSL: {reason}] {reason.lower()} (_ssl.c:1000)")
    e.reason = reason
    return e


def test_io_error_mapping() -> None:
    s = _io_error(TimeoutError("timed out"), "r.io", 2.5)
    assert isinstance(s, Stalled) and s.seconds == 2.5 and "2.5s" in str(s)
    for exc, needle in [
        (ConnectionRefusedError(111, "Connection refused"), "r.io: connection refused"),
        (socket.gaierror(-2, "Name or service not known"),
         "r.io: no such host (Name or service not known)"),
        (_ssl_error("WRONG_VERSION_NUMBER"),
         "r.io: http: server gave HTTP response to HTTPS client"),
        (_ssl_error("CERTIFICATE_VERIFY_FAILED"), "r.io: TLS: CERTIFICATE_VERIFY_FAILED"),
        (ConnectionResetError(104, "reset"), "r.io: connection closed by the registry"),
        (OSError(113, "No route to host"), "r.io: network is unreachable"),
    ]:
        e = _io_error(exc, "r.io", 1)
        assert isinstance(e, RegistryError), exc
        assert e.kind is errors.Unavailable
        assert needle in e.text, (needle, e.text)


# --- an in-process registry ------------------------------------------------------------------
@dataclass
class Req:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    conn: int  # which TCP connection (1, 2, ...)

    @property
    def query(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))

    @property
    def route(self) -> str:
        return urllib.parse.urlsplit(self.path).path


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Registry

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1
            self.conn_no = self.server.connections

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        req = Req(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                  body, self.conn_no)
        with self.server.lock:
            self.server.requests.append(req)
        self.server.route(self, req)

    def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


Route = Callable[[Handler, Req], None]


class Registry(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.connections = 0
        self.requests: list[Req] = []
        self.route: Route = lambda h, r: h.reply(404)
        self.release = threading.Event()  # stalled handlers wait on it
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,),
                                        daemon=True)
        self._thread.start()

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # TLS hellos, connections cut by the client

    @property
    def domain(self) -> str:
        return f"127.0.0.1:{self.server_port}"

    def endpoint(self, insecure: bool = True) -> Endpoint:
        return Endpoint(domain=self.domain, path="lib/img", insecure=insecure, mirror=False)

    def stop(self) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()


@pytest.fixture
def reg() -> Iterator[Registry]:
    r = Registry()
    yield r
    r.stop()


@pytest.fixture
def reg2() -> Iterator[Registry]:
    r = Registry()
    yield r
    r.stop()


@pytest.fixture
def sessions() -> Iterator[list[Session]]:
    out: list[Session] = []
    yield out
    for s in out:
        s.cancel()
        s.close()


@pytest.fixture
def open_session(sessions: list[Session]) -> Callable[..., Session]:
    def make(reg: Registry, login: Login = ANONYMOUS, timeout: float = 5.0, insecure: bool = True,
             client: Client | None = None) -> Session:
        if client is None:  # skip the TLS attempt: it would count as a connection
            client = Client(certs_dirs=())
            client.learn_scheme(reg.domain, "http")
        s = client.session(reg.endpoint(insecure), login, timeout)
        sessions.append(s)
        return s

    return make


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def manifest_ok(h: Handler, r: Req) -> None:
    h.reply(200, MANIFEST, {"Content-Type": OCI_MANIFEST + "; charset=utf-8",
                            "Docker-Content-Digest": DIGEST})


def needs(auth: str, then: Route = manifest_ok, challenge: str = 'Basic realm="reg"') -> Route:
    def route(h: Handler, r: Req) -> None:
        if r.route.startswith("/v2/") and r.headers.get("authorization") != auth:
            h.reply(401, _errors_body("UNAUTHORIZED", "authentication required"),
                    {"WWW-Authenticate": challenge, "Content-Type": "application/json"})
            return
        then(h, r)

    return route


def registry_gets(reg: Registry) -> list[Req]:
    return [r for r in reg.requests if r.route.startswith("/v2/")]


# --- flows -----------------------------------------------------------------------------------
def test_manifest_get(reg: Registry, open_session: Callable[..., Session]) -> None:
    reg.route = manifest_ok
    s = open_session(reg)
    assert s.manifest("latest") == (MANIFEST, OCI_MANIFEST)
    [r] = reg.requests
    assert (r.method, r.path) == ("GET", "/v2/lib/img/manifests/latest")
    assert r.headers["accept"] == ", ".join(MANIFEST_TYPES)
    assert r.headers["user-agent"] == USER_AGENT
    assert "authorization" not in r.headers  # nothing sent until the registry asks
    assert s.manifest(DIGEST)[0] == MANIFEST
    assert reg.requests[-1].path == f"/v2/lib/img/manifests/{DIGEST}"


def test_basic_challenge(reg: Registry, open_session: Callable[..., Session]) -> None:
    reg.route = needs(basic("u", "p:w"))
    s = open_session(reg, Login("u", "p:w"))
    assert s.manifest("latest")[0] == MANIFEST
    assert s.manifest("v2")[0] == MANIFEST
    gets = registry_gets(reg)
    assert [r.headers.get("authorization") for r in gets] == \
        [None, basic("u", "p:w"), basic("u", "p:w")]


def test_basic_challenge_without_credentials(reg: Registry,
                                             open_session: Callable[..., Session]) -> None:
    reg.route = needs(basic("u", "p"))
    with pytest.raises(RegistryError) as e:
        open_session(reg).manifest("latest")
    assert e.value.kind is errors.Unauthenticated


def test_wrong_password(reg: Registry, open_session: Callable[..., Session]) -> None:
    reg.route = needs(basic("u", "right"))
    with pytest.raises(RegistryError) as e:
        open_session(reg, Login("u", "WRONG-SECRET")).manifest("latest")
    assert e.value.kind is errors.Unauthenticated
    assert "WRONG-SECRET" not in e.value.text
    assert len(registry_gets(reg)) == 2  # one challenge answered, no loop


def _token_route(reg: Registry, token_auth: Route) -> Route:
    realm = f"http://{reg.domain}/token"
    challenge = (f'Bearer realm="{realm}",service="test-registry",'
                 'scope="repository:lib/img:pull"')
    inner = needs("Bearer TOKEN-1", challenge=challenge)

    def route(h: Handler, r: Req) -> None:
        if r.route == "/token":
            token_auth(h, r)
        else:
            inner(h, r)

    return route


def test_bearer_with_basic_creds(reg: Registry, open_session: Callable[..., Session]) -> None:
    def token(h: Handler, r: Req) -> None:
        if r.method == "GET" and r.headers.get("authorization") == basic("u", "p"):
            h.reply(200, b'{"token": "TOKEN-1", "expires_in": 300}')
        else:
            h.reply(401)

    reg.route = _token_route(reg, token)
    s = open_session(reg, Login("u", "p"))
    assert s.manifest("latest")[0] == MANIFEST
    assert s.manifest("other")[0] == MANIFEST
    toks = [r for r in reg.requests if r.route == "/token"]
    assert len(toks) == 1  # the token is kept for the session
    assert toks[0].query == {"service": "test-registry", "scope": "repository:lib/img:pull"}
    gets = registry_gets(reg)
    assert [r.headers.get("authorization") for r in gets] == \
        [None, "Bearer TOKEN-1", "Bearer TOKEN-1"]


def test_bearer_anonymous(reg: Registry, open_session: Callable[..., Session]) -> None:
    def token(h: Handler, r: Req) -> None:
        assert "authorization" not in r.headers
        h.reply(200, b'{"access_token": "TOKEN-1"}')

    reg.route = _token_route(reg, token)
    assert open_session(reg).manifest("latest")[0] == MANIFEST


def test_bearer_token_refused(reg: Registry, open_session: Callable[..., Session]) -> None:
    reg.route = _token_route(reg, lambda h, r: h.reply(401))
    with pytest.raises(RegistryError) as e:
        open_session(reg, Login("u", "bad")).manifest("latest")
    assert e.value.kind is errors.Unauthenticated
    assert "refused the credentials" in e.value.text


def test_bearer_no_token_in_answer(reg: Registry, open_session: Callable[..., Session]) -> None:
    reg.route = _token_route(reg, lambda h, r: h.reply(200, b'{"nothing": 1}'))
    with pytest.raises(RegistryError) as e:
        open_session(reg).manifest("latest")
    assert e.value.kind is errors.Unavailable and "no token" in e.value.text


def test_identity_token_refresh_grant(reg: Registry,
                                      open_session: Callable[..., Session]) -> None:
    def token(h: Handler, r: Req) -> None:
        form = dict(urllib.parse.parse_qsl(r.body.decode()))
        if r.method == "POST" and form.get("refresh_token") == "IDT":
            h.reply(200, b'{"access_token": "TOKEN-1"}')
        else:
            h.reply(401)

    reg.route = _token_route(reg, token)
    s = open_session(reg, Login(identity_token="IDT"))
    assert s.manifest("latest")[0] == MANIFEST
    [t] = [r for r in reg.requests if r.route == "/token"]
    assert t.method == "POST"
    assert t.headers["content-type"] == "application/x-www-form-urlencoded"
    form = dict(urllib.parse.parse_qsl(t.body.decode()))
    assert form["grant_type"] == "refresh_token"
    assert form["service"] == "test-registry"
    assert form["scope"] == "repository:lib/img:pull"
    assert form["client_id"]
    assert "authorization" not in t.headers


def test_registry_token_sent_directly(reg: Registry,
                                      open_session: Callable[..., Session]) -> None:
    reg.route = _token_route(reg, lambda h, r: h.reply(500))
    s = open_session(reg, Login(registry_token="TOKEN-1"))
    assert s.manifest("latest")[0] == MANIFEST
    assert [r.headers.get("authorization") for r in reg.requests] == ["Bearer TOKEN-1"]


def test_registry_token_refused(reg: Registry, open_session: Callable[..., Session]) -> None:
    reg.route = _token_route(reg, lambda h, r: h.reply(500))
    with pytest.raises(RegistryError) as e:
        open_session(reg, Login(registry_token="OTHER")).manifest("latest")
    assert e.value.kind is errors.Unauthenticated and "registry token" in e.value.text
    assert len(reg.requests) == 1  # no token request


def test_manifest_unknown(reg: Registry, open_session: Callable[..., Session]) -> None:
    reg.route = lambda h, r: h.reply(404, _errors_body("MANIFEST_UNKNOWN", "manifest unknown"),
                                     {"Content-Type": "application/json"})
    s = open_session(reg)
    with pytest.raises(RegistryError) as e:
        s.manifest("nope")
    assert e.value.kind is errors.NotFound
    assert "manifest unknown" in e.value.text and f"{reg.domain}/lib/img:nope" in e.value.text
    # the error body was read: the connection is still usable
    with pytest.raises(RegistryError):
        s.manifest("nope2")
    assert reg.connections == 1


def test_blob_redirect_drops_authorization(reg: Registry, reg2: Registry,
                                           open_session: Callable[..., Session]) -> None:
    blob = b"blob-bytes" * 1000

    def registry(h: Handler, r: Req) -> None:
        h.reply(307, b"", {"Location": f"http://{reg2.domain}/storage/x?sig=abc"})

    def storage(h: Handler, r: Req) -> None:
        if r.route == "/storage/x":
            h.reply(200, blob)
        else:
            h.reply(404)

    reg.route = needs(basic("u", "p"), registry)
    reg2.route = storage
    s = open_session(reg, Login("u", "p"))
    stream = s.open_blob(DIGEST)
    got = b""
    while chunk := stream.read(4096):
        got += chunk
    stream.close()
    assert got == blob
    assert [r.path for r in registry_gets(reg)] == [f"/v2/lib/img/blobs/{DIGEST}"] * 2
    assert registry_gets(reg)[1].headers["authorization"] == basic("u", "p")
    [st] = reg2.requests
    assert st.path == "/storage/x?sig=abc"
    assert "authorization" not in st.headers


def test_redirect_on_same_host_keeps_authorization(reg: Registry,
                                                   open_session: Callable[..., Session]) -> None:
    def registry(h: Handler, r: Req) -> None:
        if r.route.startswith("/v2/"):
            h.reply(302, b"", {"Location": "/data/blob"})
        else:
            h.reply(200, b"data")

    reg.route = needs(basic("u", "p"), registry)
    reg.route = (lambda inner: lambda h, r: (registry(h, r) if r.route == "/data/blob"
                                             else inner(h, r)))(reg.route)
    s = open_session(reg, Login("u", "p"))
    stream = s.open_blob(DIGEST)
    assert stream.read() == b"data"
    stream.close()
    assert reg.requests[-1].route == "/data/blob"
    assert reg.requests[-1].headers.get("authorization") == basic("u", "p")


def test_connections_reused(reg: Registry, open_session: Callable[..., Session]) -> None:
    blob = b"z" * 100_000

    def route(h: Handler, r: Req) -> None:
        if "/blobs/" in r.route:
            h.reply(200, blob)
        else:
            manifest_ok(h, r)

    reg.route = needs(basic("u", "p"), route)
    s = open_session(reg, Login("u", "p"))
    for tag in ("a", "b", "c"):
        assert s.manifest(tag)[0] == MANIFEST
    stream = s.open_blob(DIGEST)
    got = b""
    while chunk := stream.read(1 << 16):
        got += chunk
    stream.close()
    assert got == blob
    assert s.manifest("d")[0] == MANIFEST
    assert len(reg.requests) == 6  # the 401 included
    assert reg.connections == 1
    assert {r.conn for r in reg.requests} == {1}


def test_blob_closed_early_does_not_reuse_connection(
        reg: Registry, open_session: Callable[..., Session]) -> None:
    def route(h: Handler, r: Req) -> None:
        if "/blobs/" in r.route:
            h.reply(200, b"z" * 1_000_000)
        else:
            manifest_ok(h, r)

    reg.route = route
    s = open_session(reg)
    stream = s.open_blob(DIGEST)
    assert len(stream.read(10)) == 10
    stream.close()  # body not read to the end: the connection cannot carry another request
    assert s.manifest("a")[0] == MANIFEST
    assert reg.connections == 2


def test_server_closing_keepalive_is_retried(reg: Registry,
                                             open_session: Callable[..., Session]) -> None:
    def route(h: Handler, r: Req) -> None:
        manifest_ok(h, r)
        h.close_connection = True  # closes without saying "Connection: close"

    reg.route = route
    s = open_session(reg)
    assert s.manifest("a")[0] == MANIFEST
    time.sleep(0.1)  # let the server close it
    assert s.manifest("b")[0] == MANIFEST
    assert s.manifest("c")[0] == MANIFEST
    assert [r.path.rsplit("/", 1)[1] for r in reg.requests] == ["a", "b", "c"]
    assert reg.connections == 3


def _stalling_blob(reg: Registry, sent: int = 10, total: int = 1000) -> None:
    def route(h: Handler, r: Req) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(total))
        h.end_headers()
        h.wfile.write(b"x" * sent)
        reg.release.wait(30)

    reg.route = route


def test_stalled_mid_body(reg: Registry, open_session: Callable[..., Session]) -> None:
    _stalling_blob(reg)
    s = open_session(reg, timeout=0.5)
    stream = s.open_blob(DIGEST)
    assert stream.read(10) == b"x" * 10
    t0 = time.monotonic()
    with pytest.raises(Stalled) as e:
        stream.read(100)
    assert 0.3 < time.monotonic() - t0 < 3
    assert e.value.seconds == 0.5
    stream.close()


def test_stalled_before_headers(reg: Registry, open_session: Callable[..., Session]) -> None:
    reg.route = lambda h, r: _hang(reg)
    s = open_session(reg, timeout=0.5)
    t0 = time.monotonic()
    with pytest.raises(Stalled):
        s.manifest("latest")
    assert time.monotonic() - t0 < 3


def _hang(reg: Registry) -> None:
    reg.release.wait(30)


def _cancel_soon(s: Session, delay: float = 0.3) -> threading.Timer:
    t = threading.Timer(delay, s.cancel)
    t.start()
    return t


def test_cancel_while_waiting_for_headers(reg: Registry,
                                          open_session: Callable[..., Session]) -> None:
    reg.route = lambda h, r: _hang(reg)
    s = open_session(reg, timeout=30)
    _cancel_soon(s)
    t0 = time.monotonic()
    with pytest.raises(Cancelled):
        s.manifest("latest")
    assert time.monotonic() - t0 < 3
    with pytest.raises(Cancelled):  # and everything after
        s.open_blob(DIGEST)


def test_cancel_while_blob_read_blocks_read_all(reg: Registry,
                                                open_session: Callable[..., Session]) -> None:
    _stalling_blob(reg)
    s = open_session(reg, timeout=30)
    stream = s.open_blob(DIGEST)
    _cancel_soon(s)
    t0 = time.monotonic()
    with pytest.raises(Cancelled):
        stream.read()
    assert time.monotonic() - t0 < 3
    stream.close()


def test_cancel_while_blob_read_blocks(reg: Registry,
                                       open_session: Callable[..., Session]) -> None:
    _stalling_blob(reg)
    s = open_session(reg, timeout=30)
    stream = s.open_blob(DIGEST)
    assert stream.read(10) == b"x" * 10
    _cancel_soon(s)
    t0 = time.monotonic()
    try:
        with pytest.raises(Cancelled):
            while stream.read(1 << 20):
                pass
    finally:
        assert time.monotonic() - t0 < 3
        stream.close()


def test_body_cut_short(reg: Registry, open_session: Callable[..., Session]) -> None:
    def route(h: Handler, r: Req) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "1000")
        h.end_headers()
        h.wfile.write(b"x" * 10)
        h.close_connection = True

    reg.route = route
    stream = open_session(reg).open_blob(DIGEST)
    try:
        with pytest.raises(RegistryError) as e:
            while stream.read(100):
                pass
        assert e.value.kind is errors.Unavailable
    finally:
        stream.close()


def test_insecure_learns_plain_http(reg: Registry, open_session: Callable[..., Session]) -> None:
    reg.route = manifest_ok
    client = Client(certs_dirs=())
    assert client.known_scheme(reg.domain) is None
    s = open_session(reg, client=client)
    assert s.manifest("latest")[0] == MANIFEST
    assert client.known_scheme(reg.domain) == "http"
    before = reg.connections  # the TLS attempt counted too
    s2 = open_session(reg, client=client)
    assert s2.manifest("latest")[0] == MANIFEST
    assert reg.connections == before + 1  # straight to http, no TLS attempt
    assert len(reg.requests) == 2


def test_secure_against_plain_http(reg: Registry, open_session: Callable[..., Session]) -> None:
    reg.route = manifest_ok
    client = Client(certs_dirs=())
    with pytest.raises(RegistryError) as e:
        open_session(reg, insecure=False, client=client).manifest("latest")
    assert e.value.kind is errors.Unavailable
    assert "HTTP response to HTTPS client" in e.value.text
    assert reg.requests == []
    assert client.known_scheme(reg.domain) is None


def test_connection_refused() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    ep = Endpoint(domain=f"127.0.0.1:{port}", path="lib/img", insecure=True, mirror=False)
    s = Client(certs_dirs=()).session(ep, Login(), 5)
    with pytest.raises(RegistryError) as e:
        s.manifest("latest")
    assert e.value.kind is errors.Unavailable and "connection refused" in e.value.text
    s.close()


def test_learnt_http_never_applies_to_a_secure_endpoint(
        reg: Registry, open_session: Callable[..., Session]) -> None:
    """A scheme learnt while the registry was insecure (or insecure under another
    [[registry]] entry) must not carry credentials over plain HTTP once it is not."""
    client = Client(certs_dirs=())
    client.learn_scheme(reg.domain, "http")
    secure = open_session(reg, login=Login("u", "p"), insecure=False, client=client)
    with pytest.raises(RegistryError) as e:
        secure.manifest("latest")
    assert e.value.kind is errors.Unavailable
    assert "HTTP response to HTTPS client" in e.value.text


def test_connect_timeout_is_unavailable() -> None:
    """A registry that never answers the SYN is unreachable (the next search registry is
    tried), not a stalled download."""

    class SlowConn:
        sock = None

        def connect(self) -> None:
            raise TimeoutError("timed out")

    session = Client(certs_dirs=()).session(
        Endpoint(domain="192.0.2.1:5000", path="x", insecure=False, mirror=False), ANONYMOUS, 1)
    with pytest.raises(RegistryError) as e:
        session._dial(SlowConn(), "192.0.2.1:5000")  # type: ignore[arg-type]
    assert e.value.kind is errors.Unavailable and "timeout while connecting" in e.value.text


def test_cancel_before_a_read_stops_it(reg: Registry, open_session: Callable[..., Session]
                                       ) -> None:
    """A cancel that lands while a request is still connecting is seen at the first read,
    not after the whole blob."""
    reg.route = lambda h, r: h.reply(200, b"x" * (4 << 20))
    s = open_session(reg)
    blob = s.open_blob(DIGEST)
    s.cancel()
    with pytest.raises(Cancelled):
        blob.read(1 << 20)
    blob.close()
