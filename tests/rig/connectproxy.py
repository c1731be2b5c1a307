"""A forward proxy that only tunnels (HTTP CONNECT), as corporate proxies for registries do.

It records each CONNECT target and the Proxy-Authorization it got, and pumps bytes both
ways. 127.0.0.1 only, threads joined on close().
"""

from __future__ import annotations

import contextlib
import socket
import threading


class ConnectProxy:
    def __init__(self, need_auth: str = "") -> None:
        self.need_auth = need_auth  # the whole Proxy-Authorization value required, if any
        self.tunnels: list[str] = []
        self.refused = 0
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        self._closed = False
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._start(self._accept)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _start(self, target: object, *args: object) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        t.start()
        self._threads.append(t)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            self._socks.append(client)
            self._start(self._serve, client)

    def _serve(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            data = client.recv(4096)
            if not data:
                client.close()
                return
            head += data
        lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:])}
        if method != "CONNECT" or (self.need_auth and
                                   headers.get("proxy-authorization") != self.need_auth):
            with self._lock:
                self.refused += 1
            client.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                           b"Content-Length: 0\r\n\r\n")
            client.close()
            return
        host, _, port = target.rpartition(":")
        try:
            upstream = socket.create_connection((host, int(port)))
        except OSError:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            client.close()
            return
        with self._lock:
            self.tunnels.append(target)
        self._socks.append(upstream)
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self._start(self._pump, upstream, client)
        self._pump(client, upstream)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._closed = True
        self._server.close()
        for s in self._socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        for t in self._threads:
            t.join(5)
