"""The streaming server the CRI's Exec and PortForward URLs point at (the kubelet proxies
kubectl to it; crictl connects directly).

Each URL carries a one-time token: random, single use, expiring after a minute, bound to the
request it was made for (``TokenCache``). The connection is an HTTP/1.1 request upgraded to
SPDY/3.1 (``Upgrade: SPDY/3.1``) or to ``websocket`` (see websocket.py) with the Kubernetes
stream protocols:

- exec, ``X-Stream-Protocol-Version`` v4/v5.channel.k8s.io (v1-v3 too): streams by their
  ``streamtype`` header (error, stdin, stdout, stderr, resize); the exit goes on the error
  stream as a metav1.Status (v4+: ``NonZeroExitCode`` with the ``ExitCode`` cause).
- attach: the same streams, to the container's own stdio through conmon's attach socket.
- port-forward, ``portforward.k8s.io``: a data and an error stream per connection, paired by
  ``requestID``; the connection is made inside the pod's network namespace. Over WebSocket
  the same SPDY session in client-go's tunnel (``SPDY/3.1+portforward.k8s.io``), or the
  kubelet's channels (``v4.channel.k8s.io``: one connection per ``port`` query parameter).

With a certificate and key the server speaks TLS (https URLs); with a CA too, clients must
present a certificate it signed (crictl and the kubelet's proxy present none: see
docs/streaming.md). A client without one gets a 403 that says so, before its token is looked
at; a certificate the CA did not sign fails the handshake.

See docs/streaming.md for what is not built yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import json
import os
import secrets
import signal
import socket
import ssl
import struct
import tempfile
import termios
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from podsandbox import kernel
from shim import log
from shim.containers import exec_sync
from shim.oci.runtime import OCIRuntime
from shim.streaming import metrics, websocket
from shim.streaming.session import Session, Stream

TOKEN_TTL = 60.0
HEAD_LIMIT = 16 * 1024
FORWARD_READ = 256 * 1024  # port-forward: the most read from the pod's socket at once
FIRST_SIZE_WAIT = 1.0  # how long an exec with a TTY waits for the client's terminal size
EXEC_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io",
                  "v2.channel.k8s.io", "channel.k8s.io")
PORTFORWARD_PROTOCOL = "portforward.k8s.io"


@dataclass(frozen=True)
class ExecTarget:
    container_id: str
    runtime: OCIRuntime
    bundle: str
    process: dict[str, Any]
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool


@dataclass(frozen=True)
class AttachTarget:
    container_id: str
    socket: str  # conmon's attach socket (SOCK_SEQPACKET)
    ctl: str  # conmon's control FIFO (resize)
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool
    stdin_once: bool


@dataclass(frozen=True)
class PortForwardTarget:
    sandbox_id: str
    netns: str  # "" = the node's network namespace (hostNetwork pods)
    ports: tuple[int, ...]  # the ports the request named (empty: any)


@dataclass
class TokenCache:
    ttl: float = TOKEN_TTL
    _items: dict[str, tuple[float, str, Any]] = field(default_factory=dict)

    def put(self, kind: str, target: Any) -> str:
        now = time.monotonic()
        for tok in [t for t, (exp, _, _) in self._items.items() if exp < now]:
            del self._items[tok]
        token = secrets.token_urlsafe(24)
        self._items[token] = (now + self.ttl, kind, target)
        return token

    def take(self, kind: str, token: str) -> Any | None:
        """The request the token was made for, once; None when unknown, used or expired."""
        item = self._items.pop(token, None)
        if item is None:
            return None
        expires, k, target = item
        if k != kind or expires < time.monotonic():
            return None
        return target


def _failure(protocol: str, message: str) -> bytes:
    """An error for the error stream: a metav1.Status from v4 on, plain text before."""
    if protocol in ("v4.channel.k8s.io", "v5.channel.k8s.io"):
        return json.dumps({"metadata": {}, "status": "Failure", "message": message,
                           "reason": "InternalError"}).encode()
    return message.encode()


def _status(code: int) -> bytes:
    if code == 0:
        return json.dumps({"metadata": {}, "status": "Success"}).encode()
    return json.dumps({
        "metadata": {}, "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command, "
                   f"exit status {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }).encode()


class StreamingServer:
    def __init__(self, address: str = "127.0.0.1", port: int = 0, *, max_sessions: int = 100,
                 idle_timeout: float = 14400.0, tls_cert: str = "", tls_key: str = "",
                 tls_ca: str = "") -> None:
        self.address = address
        self.port = port
        self.tls = (tls_cert, tls_key, tls_ca)
        self.max_sessions = max_sessions
        self.idle_timeout = idle_timeout
        self.sessions = 0
        self.tokens = TokenCache()
        self.logger = log.get("streaming")
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        context = tls_context(*self.tls) if self.tls[0] else None
        if context is None and not ipaddress.ip_address(self.address).is_loopback:
            self.logger.warning("streaming server on a non-loopback address without TLS: "
                                "anyone who sees a URL can use it (set streaming.tls_cert "
                                "and tls_key)", address=self.address)
        tls: dict[str, Any] = {"ssl": context, "ssl_handshake_timeout": 30} if context else {}
        self._server = await asyncio.start_server(self._handle, self.address, self.port, **tls)
        self.port = self._server.sockets[0].getsockname()[1]
        self.logger.info("streaming server up", address=self.address, port=self.port,
                         tls=context is not None, client_certs=bool(self.tls[2]))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def url(self, kind: str, target: Any) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        scheme = "https" if self.tls[0] else "http"
        return f"{scheme}://{host}:{self.port}/{kind}/{self.tokens.put(kind, target)}"

    # --- HTTP ------------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError) as e:  # a client that stalls, hangs up or speaks nonsense
            self.logger.debug("stream connection ended", error=str(e) or type(e).__name__)
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        if len(head) > HEAD_LIMIT:
            return await _reply(writer, 431, "request header too large")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            return await _reply(writer, 400, "bad request line")
        path, _, query = parts[1].partition("?")
        headers: dict[str, list[str]] = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers.setdefault(k.strip().lower(), []).extend(
                    x.strip() for x in v.split(","))
        segs = path.strip("/").split("/")
        if len(segs) != 2 or segs[0] not in ("exec", "attach", "portforward"):
            return await _reply(writer, 404, "not found")
        kind, token = segs
        if self.tls[2] and not _has_client_cert(writer):
            metrics.REFUSED.labels("client_cert").inc()
            return await _reply(writer, 403, "a client certificate signed by the streaming "
                                             "server's CA (streaming.tls_ca) is required")
        target = self.tokens.take(kind, token)
        if target is None:
            metrics.REFUSED.labels("token").inc()
            return await _reply(writer, 404, "unknown or expired token")
        if self.sessions >= self.max_sessions:
            metrics.REFUSED.labels("busy").inc()
            return await _reply(writer, 503, f"{self.sessions} streaming sessions already "
                                             f"(streaming.max_sessions)")
        upgrade = [u.lower() for u in headers.get("upgrade", [])]
        if "websocket" in upgrade:
            offered = headers.get("sec-websocket-protocol", [])
            return await self._serve_websocket(kind, target, head, query, offered, reader,
                                               writer)
        if "spdy/3.1" not in upgrade:
            return await _reply(writer, 400, "upgrade to SPDY/3.1 or to websocket")
        offered = headers.get("x-stream-protocol-version", [])
        ours = (PORTFORWARD_PROTOCOL,) if kind == "portforward" else EXEC_PROTOCOLS
        chosen = next((p for p in offered if p in ours), None)
        if offered and chosen is None:
            return await _reply(writer, 403, f"no common protocol (offered {offered})")
        writer.write(("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                      "Upgrade: SPDY/3.1\r\n"
                      + (f"X-Stream-Protocol-Version: {chosen}\r\n" if chosen else "")
                      + "\r\n").encode())
        await writer.drain()
        await self._run(kind, target, Session(reader, writer), chosen or "")

    async def _serve_websocket(self, kind: str, target: Any, head: bytes, query: str,
                               offered: list[str], reader: asyncio.StreamReader,
                               writer: asyncio.StreamWriter) -> None:
        channels, ports = None, []
        protocols: tuple[str, ...] = websocket.EXEC_PROTOCOLS
        allow_none = False
        if kind == "portforward":
            protocols, allow_none = websocket.PORTFORWARD_PROTOCOLS, True
        if kind == "portforward" and websocket.TUNNEL_PORTFORWARD not in offered:
            # the kubelet's channels: the ports come with the URL, checked before the upgrade
            try:
                ports = websocket.ports_from_query(parse_qs(query).get("port", []))
            except ValueError as e:
                return await _reply(writer, 400, str(e))
            if other := [p for p in ports if target.ports and p not in target.ports]:
                return await _reply(writer, 400, f"ports {other} were not asked for")
            channels = {f"{n}{i}": 2 * i + c for i in range(len(ports))
                        for n, c in (("data", 0), ("error", 1))}
        proto, answer, accepted, chosen = websocket.handshake(head, protocols, allow_none)
        # what the client offered: a client we do not speak says so in the log
        (self.logger.debug if accepted else self.logger.info)(
            "websocket upgrade", kind=kind, offered=", ".join(offered), chosen=chosen,
            accepted=accepted)
        writer.write(answer)
        await writer.drain()
        if not accepted:
            return  # refused (no common subprotocol, a bad handshake): the answer said why
        if chosen == websocket.TUNNEL_PORTFORWARD:
            tunnel = websocket.Tunnel(proto, reader, writer)
            session: Session | websocket.WsSession = Session(tunnel, tunnel)
            session.transport = "websocket"
            return await self._run(kind, target, session, chosen)
        session = websocket.WsSession(proto, reader, writer, chosen, channels)
        if kind == "portforward":
            target = _WsPorts(target, tuple(ports))
        await self._run(kind, target, session, chosen)

    async def _run(self, kind: str, target: Any, session: Session | websocket.WsSession,
                   protocol: str) -> None:
        transport = session.transport
        reading = asyncio.create_task(session.serve())
        watchdog = asyncio.create_task(self._idle(session))
        start = time.monotonic()
        code: int | str = ""
        self.sessions += 1
        metrics.SESSIONS.labels(kind).inc()
        metrics.SESSIONS_TOTAL.labels(kind, transport).inc()
        try:
            if kind == "exec":
                code = await self._exec(session, target, protocol)
            elif kind == "attach":
                await self._attach(session, target, protocol)
            elif isinstance(session, Session):
                await self._portforward(session, target)
            else:
                await self._portforward_ws(session, target)
        finally:
            self.sessions -= 1
            metrics.SESSIONS.labels(kind).dec()
            metrics.BYTES.labels(kind, "in").inc(session.bytes_in)
            metrics.BYTES.labels(kind, "out").inc(session.bytes_out)
            watchdog.cancel()
            await session.close()
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading
            self.logger.info("stream session", kind=kind, protocol=protocol,
                             transport=transport,
                             duration_ms=round((time.monotonic() - start) * 1000, 1),
                             exit_code=code, bytes_in=session.bytes_in,
                             bytes_out=session.bytes_out)

    async def _idle(self, session: Session | websocket.WsSession) -> None:
        """Close a session through which nothing has passed for ``idle_timeout``."""
        seen, since = -1, time.monotonic()
        while True:
            await asyncio.sleep(min(self.idle_timeout / 4, 60.0))
            moved = session.bytes_in + session.bytes_out
            if moved != seen:
                seen, since = moved, time.monotonic()
            elif time.monotonic() - since >= self.idle_timeout:
                self.logger.info("stream session idle; closing", idle_s=self.idle_timeout)
                session.writer.close()  # both readers end; the session's task winds down
                return

    # --- exec --------------------------------------------------------------------------------
    async def _exec(self, session: Session | websocket.WsSession, t: ExecTarget,
                    protocol: str) -> int:
        want = {"error"} | {n for n, on in (("stdin", t.stdin), ("stdout", t.stdout),
                                             ("stderr", t.stderr and not t.tty),
                                             ("resize", t.tty)) if on}
        streams = await session.open_streams(want)
        process = t.process
        master = slave = -1
        started: asyncio.Future[asyncio.subprocess.Process] = \
            asyncio.get_running_loop().create_future()
        pumps: list[asyncio.Task[None]] = []
        process_path = pid_path = ""
        try:
            if t.tty:
                master, slave = os.openpty()
                first = asyncio.get_running_loop().create_future()
                pumps.append(asyncio.create_task(
                    self._resize_pump(streams.get("resize"), master, started, first)))
                # The process must start at the client's size: runc gives its pty no size
                # until its own first resize, so a command that asks at once (stty size)
                # could see 0x0 (1 run in 40 with runc; crun sizes first).
                with contextlib.suppress(TimeoutError):
                    width, height = await asyncio.wait_for(asyncio.shield(first),
                                                           FIRST_SIZE_WAIT)
                    process = {**process, "consoleSize": {"height": height, "width": width}}
            fd, process_path = tempfile.mkstemp(dir=t.bundle, prefix="exec-", suffix=".json")
            with os.fdopen(fd, "w") as f:
                json.dump(process, f)
            pid_path = process_path[: -len(".json")] + ".pid"
            argv = t.runtime.argv("exec", "--process", process_path, "--pid-file", pid_path,
                                  t.container_id)
            if t.tty:
                proc = await asyncio.create_subprocess_exec(
                    *argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
                os.close(slave)
                slave = -1
            else:
                proc = await asyncio.create_subprocess_exec(
                    *argv, stdin=asyncio.subprocess.PIPE if t.stdin else asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            started.set_result(proc)
            io = [asyncio.create_task(p) for p in self._exec_pumps(session, streams, proc,
                                                                   master, t)]
            pumps = io + pumps
            waiting = asyncio.create_task(proc.wait())
            gone = asyncio.create_task(session.closed.wait())
            await asyncio.wait([waiting, gone], return_when=asyncio.FIRST_COMPLETED)
            gone.cancel()
            # the client went away: end what it started (the tree), the runtime reaps it; no
            # pid file yet (not started): the runtime itself
            if not waiting.done() and not await exec_sync.kill_tree(pid_path):
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            code = await waiting
            await asyncio.wait(io[:2], timeout=5)  # the output already read is delivered
        finally:
            for p in pumps:
                p.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for fd_ in (master, slave):
                if fd_ >= 0:
                    os.close(fd_)
            if not started.done():
                started.cancel()
            for path in (process_path, pid_path):
                with contextlib.suppress(FileNotFoundError):
                    if path:
                        os.unlink(path)
        err = streams["error"]
        if protocol in ("v4.channel.k8s.io", "v5.channel.k8s.io"):
            await session.send(err, _status(code))
        elif code:
            await session.send(err, f"command terminated with exit code {code}".encode())
        for st in streams.values():
            await session.close_stream(st)
        return code

    @staticmethod
    async def _resize_pump(st: Stream | None, master: int,
                           started: asyncio.Future[asyncio.subprocess.Process],
                           first: asyncio.Future[tuple[int, int]]) -> None:
        """Each size the client sends, on our pty (the runtime's stdio), then SIGWINCH to
        the runtime, which resizes the container's pty from ours; the first one also to
        ``first``, before the runtime starts."""
        if st is None:
            return
        async for width, height in terminal_sizes(st):
            with contextlib.suppress(OSError):
                fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
            if not first.done():
                first.set_result((width, height))
            if started.done() and not started.cancelled():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(started.result().pid, signal.SIGWINCH)

    def _exec_pumps(self, session: Session | websocket.WsSession, streams: dict[str, Stream],
                    proc: asyncio.subprocess.Process, master: int,
                    t: ExecTarget) -> list[Coroutine[Any, Any, None]]:
        loop = asyncio.get_running_loop()

        async def out_pipe(pipe: asyncio.StreamReader | None, name: str) -> None:
            if pipe is None:
                return
            st = streams.get(name)
            while chunk := await pipe.read(65536):
                if st is not None:
                    await session.send(st, chunk)

        async def out_tty() -> None:
            st = streams.get("stdout")
            while True:
                try:
                    chunk = await loop.run_in_executor(None, os.read, master, 65536)
                except OSError:  # EIO: the other side is gone
                    return
                if not chunk:
                    return
                if st is not None:
                    await session.send(st, chunk)

        async def in_pump() -> None:
            st = streams.get("stdin")
            if st is None:
                return
            while (data := await st.read()) is not None:
                if t.tty:
                    await loop.run_in_executor(None, os.write, master, data)
                elif proc.stdin is not None:
                    proc.stdin.write(data)
                    with contextlib.suppress(ConnectionError):
                        await proc.stdin.drain()
            if t.tty:
                with contextlib.suppress(OSError):
                    await loop.run_in_executor(None, os.write, master, b"\x04")  # EOF
            elif proc.stdin is not None:
                proc.stdin.close()

        if t.tty:
            return [out_tty(), _nothing(), in_pump()]
        return [out_pipe(proc.stdout, "stdout"), out_pipe(proc.stderr, "stderr"), in_pump()]

    # --- attach ------------------------------------------------------------------------------
    async def _attach(self, session: Session | websocket.WsSession, t: AttachTarget,
                      protocol: str) -> None:
        """The container's own stdio through conmon's attach socket: each packet conmon sends
        starts with the pipe it came from (conmon's stdpipe_t: 2 stdout, 3 stderr); what we
        send is the container's stdin."""
        want = {"error"} | {n for n, on in (("stdin", t.stdin), ("stdout", t.stdout),
                                             ("stderr", t.stderr and not t.tty),
                                             ("resize", t.tty)) if on}
        streams = await session.open_streams(want)
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        sock.setblocking(False)
        # by the directory's fd: the socket's own path may be longer than AF_UNIX takes
        dirfd = -1
        try:
            dirfd = os.open(os.path.dirname(t.socket), os.O_PATH | os.O_CLOEXEC)
            await loop.sock_connect(sock, f"/proc/self/fd/{dirfd}/{os.path.basename(t.socket)}")
        except OSError as e:
            sock.close()
            await session.send(streams["error"], _failure(protocol, f"cannot attach to "
                                                          f"container {t.container_id}: {e}"),
                               fin=True)
            return
        finally:
            if dirfd >= 0:
                os.close(dirfd)

        async def output() -> None:
            while data := await loop.sock_recv(sock, 8192 + 2):
                name = {2: "stdout", 3: "stderr"}.get(data[0])
                st = streams.get(name or "")
                if st is not None and len(data) > 1:
                    await session.send(st, data[1:])

        async def stdin() -> None:
            st = streams.get("stdin")
            if st is None:
                await asyncio.Event().wait()  # nothing to send: only output ends the attach
                return
            while (data := await st.read()) is not None:
                await loop.sock_sendall(sock, data)
            if t.stdin_once:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)  # conmon closes the container's stdin
                await asyncio.Event().wait()  # now the output decides when it ends

        async def resize() -> None:
            st = streams.get("resize")
            if st is None:
                return
            async for width, height in terminal_sizes(st):
                with contextlib.suppress(OSError):  # conmon's resize event: "1 height width"
                    fd = os.open(t.ctl, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                    try:
                        os.write(fd, f"1 {height} {width}\n".encode())
                    finally:
                        os.close(fd)

        tasks = [asyncio.create_task(c) for c in (output(), stdin())]
        side = asyncio.create_task(resize())
        try:
            # ends when the container's output ends (it exited) or the client's input does
            # (without stdin_once: it detaches, as with CRI-O)
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in [*tasks, side]:
                task.cancel()
            await asyncio.gather(*tasks, side, return_exceptions=True)
            sock.close()
        if protocol in ("v4.channel.k8s.io", "v5.channel.k8s.io"):
            await session.send(streams["error"], _status(0))
        for st in streams.values():
            await session.close_stream(st)

    # --- port-forward ------------------------------------------------------------------------
    async def _portforward(self, session: Session, t: PortForwardTarget) -> None:
        pairs: dict[str, dict[str, Stream]] = {}
        tasks: set[asyncio.Task[None]] = set()
        while (st := await session.new_streams.get()) is not None:
            rid = st.header("requestid")
            pair = pairs.setdefault(rid, {})
            pair[st.header("streamtype")] = st
            if "data" in pair and "error" in pair:
                del pairs[rid]
                task = asyncio.create_task(self._forward(
                    session, t, pair["data"].header("port"), pair["data"], pair["error"]))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _portforward_ws(self, session: websocket.WsSession, w: _WsPorts) -> None:
        """The kubelet's websocket port-forward: one connection per port the URL named, on
        channels 2i (data) and 2i+1 (error), each opened with the port; the session ends
        when all have."""
        pairs = [(port, session.streams[f"data{i}"], session.streams[f"error{i}"])
                 for i, port in enumerate(w.ports)]
        for port, data, error in pairs:
            await session.send(data, websocket.port_prefix(port))
            await session.send(error, websocket.port_prefix(port))
        await asyncio.gather(*(self._forward(session, w.target, str(port), data, error,
                                             half_close=False)
                               for port, data, error in pairs))

    async def _forward(self, session: Session | websocket.WsSession, t: PortForwardTarget,
                       port_text: str, data: Stream, error: Stream,
                       half_close: bool = True) -> None:
        """One connection to the pod's port, relayed to a data stream. ``half_close``: the
        client's end of its data is passed on and the pod's answer still relayed (SPDY);
        without (the websocket channels have no half-close), either side's end ends it."""
        try:
            port = int(port_text)
        except ValueError:
            port = 0
        try:
            if not 0 < port < 65536 or (t.ports and port not in t.ports):
                raise ConnectionError(f"port {port_text!r} was not asked for")
            sock = await _connect_in(t.netns, port)
        except OSError as e:
            await session.send(error, f"error forwarding port {port} to pod {t.sandbox_id}: "
                                      f"{e}".encode(), fin=True)
            await session.close_stream(data)
            return
        reader, writer = await asyncio.open_connection(sock=sock, limit=FORWARD_READ)

        async def to_pod() -> None:
            while (chunk := await data.read()) is not None:
                writer.write(chunk)
                await writer.drain()
            with contextlib.suppress(OSError):
                writer.write_eof()

        async def from_pod() -> None:
            # reads as large as the socket has (up to 256 KiB), sent as one batch of frames
            while chunk := await reader.read(FORWARD_READ):
                await session.send(data, chunk)
            await session.close_stream(data)

        try:
            if half_close:
                await asyncio.gather(to_pod(), from_pod())
            else:
                pumps = [asyncio.create_task(to_pod()), asyncio.create_task(from_pod())]
                try:  # the client's end is the connection's end
                    await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for p in pumps:
                        p.cancel()
                    await asyncio.gather(*pumps, return_exceptions=True)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            await session.close_stream(error)


@dataclass(frozen=True)
class _WsPorts:
    """A port-forward over the kubelet's websocket channels: the ports its URL named."""

    target: PortForwardTarget
    ports: tuple[int, ...]


def tls_context(cert: str, key: str, ca: str = "") -> ssl.SSLContext:
    """The server's TLS: its certificate; with a CA, a certificate a client presents must be
    one it signed. OPTIONAL, not REQUIRED: a client with none completes the handshake and is
    refused in HTTP (``_has_client_cert``), so it reads why. Under TLS 1.3 a handshake refusal
    reaches the client after its own handshake ended, as a bare EOF or reset as often as an
    alert (the kubelet reported either)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if ca:
        context.load_verify_locations(cafile=ca)
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def _has_client_cert(writer: asyncio.StreamWriter) -> bool:
    """A verified client certificate (an unverifiable one never gets past the handshake)."""
    tls = writer.get_extra_info("ssl_object")
    return tls is not None and bool(tls.getpeercert())


def json_objects(buf: bytes) -> tuple[list[dict[str, Any]], bytes]:
    """The complete JSON objects at the start of ``buf`` (TerminalSize messages), and what
    is left for the next read."""
    out: list[dict[str, Any]] = []
    text, dec, pos = buf.decode(errors="replace"), json.JSONDecoder(), 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        try:
            obj, pos = dec.raw_decode(text, pos)
        except ValueError:
            return out, text[pos:].encode()
        if isinstance(obj, dict):
            out.append(obj)


async def terminal_sizes(st: Stream) -> AsyncIterator[tuple[int, int]]:
    """(width, height) for each resize message the client sends."""
    buf = b""
    while (data := await st.read()) is not None:
        objs, buf = json_objects(buf + data)
        for obj in objs:
            with contextlib.suppress(TypeError, ValueError):
                yield int(obj.get("Width", 0)), int(obj.get("Height", 0))


async def _nothing() -> None:
    return None


async def _connect_in(netns: str, port: int) -> socket.socket:
    """A TCP connection to localhost:port made inside the pod's network namespace (the
    socket stays in it); IPv4 first, then IPv6."""
    def connect() -> socket.socket:
        last: OSError | None = None
        for family, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            s = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            s.settimeout(10)
            try:
                s.connect((addr, port))
                s.setblocking(False)
                return s
            except OSError as e:
                s.close()
                last = e
        assert last is not None
        raise last

    loop = asyncio.get_running_loop()
    if not netns:
        return await loop.run_in_executor(None, connect)
    return await loop.run_in_executor(None, kernel.in_namespaces, {"net": netns}, connect)


async def _reply(writer: asyncio.StreamWriter, code: int, text: str) -> None:
    reasons = {400: "Bad Request", 403: "Forbidden", 404: "Not Found",
               431: "Request Header Fields Too Large", 503: "Service Unavailable"}
    body = text.encode() + b"\n"
    writer.write(f"HTTP/1.1 {code} {reasons.get(code, 'Error')}\r\nContent-Type: text/plain\r\n"
                 f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    with contextlib.suppress(ConnectionError):
        await writer.drain()

