"""The Kubernetes channel protocols over WebSocket (crictl ``--transport websocket``, newer
kubectl and apiservers end to end), on the ``websockets`` library's sans-I/O server protocol
(RFC 6455 handshake, framing, masking, close: a well-kept library; only the channel layer is
ours).

Each binary message is one channel's data, its first byte the channel. Exec and attach: 0
stdin, 1 stdout, 2 stderr, 3 error, 4 resize; ``v5.channel.k8s.io`` adds a message ``255,
<channel>`` by which the client closes that channel (stdin). Port-forward (the kubelet's
``v4.channel.k8s.io``): per port ``i`` a data channel ``2i`` and an error channel ``2i+1``,
each opened by the server with the port, 2 bytes little-endian. The ``base64`` variants send
text messages, the channel as an ASCII digit (``"0" + channel``) and the data base64-encoded.
The streams look like the SPDY ones to the exec, attach and port-forward code (``read``,
``send``, ``close_stream``).

``SPDY/3.1+portforward.k8s.io`` is client-go's SPDY-over-WebSocket tunnel (what crictl's
``port-forward --transport websocket`` speaks): the binary messages carry a SPDY connection's
bytes, nothing else; ``Tunnel`` gives the SPDY session a reader and a writer over them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import struct
from collections.abc import Iterable, Sequence

from websockets.exceptions import NegotiationError
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from shim.streaming.session import Stream

CHANNELS = {"stdin": 0, "stdout": 1, "stderr": 2, "error": 3, "resize": 4}
EXEC_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "base64.channel.k8s.io",
                  "channel.k8s.io")
TUNNEL_PREFIX = "SPDY/3.1+"  # client-go's WebsocketsSPDYTunnelingPrefix
# "/" is not a token character (RFC 6455 wants subprotocols to be tokens), so the library's
# header parser refuses client-go's name: it sees this alias, the client the real name
_TUNNEL_ALIAS = "SPDY_3.1+"
TUNNEL_PORTFORWARD = TUNNEL_PREFIX + "portforward.k8s.io"
# the kubelet's websocket port-forward: these two, or no subprotocol at all (binary)
PORTFORWARD_PROTOCOLS = (TUNNEL_PORTFORWARD, "v4.channel.k8s.io", "v4.base64.channel.k8s.io")
TEXT_PROTOCOLS = ("base64.channel.k8s.io", "v4.base64.channel.k8s.io")
CLOSE_SIGNAL = 255
MAX_MESSAGE = 4 << 20


# --- framing (pure) ------------------------------------------------------------------------
def encode(channel: int, data: bytes, text: bool) -> bytes:
    """One message's payload: the channel byte and the data (base64: as ASCII)."""
    if text:
        return chr(ord("0") + channel).encode() + base64.b64encode(data)
    return bytes([channel]) + data


def decode(payload: bytes, text: bool) -> tuple[int, bytes] | None:
    """(channel, data) of one message's payload; None for one that is empty or not base64."""
    if not payload:
        return None
    if not text:
        return payload[0], bytes(payload[1:])
    try:
        return payload[0] - ord("0"), base64.b64decode(payload[1:], validate=True)
    except (binascii.Error, ValueError):
        return None


def port_prefix(port: int) -> bytes:
    """What the server sends first on a port's data and error channels."""
    return struct.pack("<H", port)


def ports_from_query(values: Sequence[str]) -> list[int]:
    """The ``port`` query parameters of a websocket port-forward (each may list several,
    comma-separated, as the kubelet reads them); ValueError when absent or not ports."""
    if not values:
        raise ValueError("query parameter \"port\" is required")
    ports = []
    for value in values:
        for p in value.split(","):
            if not p.isdigit() or not 0 < int(p) < 65536:
                raise ValueError(f"unable to parse {value!r} as a port")
            ports.append(int(p))
    return ports


# --- the handshake ------------------------------------------------------------------------
def handshake(head: bytes, protocols: Sequence[str], allow_none: bool = False
              ) -> tuple[ServerProtocol, bytes, bool, str]:
    """From the request's head as received: (protocol, the bytes to answer with, accepted,
    the subprotocol chosen ("" for none)).
    ``allow_none``: a client that offers no subprotocol is accepted (the kubelet's
    port-forward does so)."""
    def select(_: ServerProtocol, offered: Sequence[Subprotocol]) -> Subprotocol | None:
        if not offered and allow_none:
            return None
        for p in protocols:
            if p in offered:
                return Subprotocol(p)
        raise NegotiationError(f"no common subprotocol; expected one of {', '.join(protocols)}")

    protocols = [p.replace(TUNNEL_PREFIX, _TUNNEL_ALIAS) for p in protocols]
    proto = ServerProtocol(subprotocols=[Subprotocol(p) for p in protocols],
                           select_subprotocol=select, max_size=MAX_MESSAGE)
    proto.receive_data(_alias_tunnel(head))  # the library parses the request itself
    request = next((e for e in proto.events_received() if isinstance(e, Request)), None)
    if request is None:
        return proto, b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n", False, ""
    response = proto.accept(request)
    accepted = response.status_code == 101
    chosen = response.headers.get("Sec-WebSocket-Protocol", "") if accepted else ""
    if chosen.startswith(_TUNNEL_ALIAS):
        chosen = TUNNEL_PREFIX + chosen[len(_TUNNEL_ALIAS):]
        del response.headers["Sec-WebSocket-Protocol"]  # (setting one adds one)
        response.headers["Sec-WebSocket-Protocol"] = chosen
    proto.send_response(response)
    return proto, b"".join(proto.data_to_send()), accepted, chosen


def _alias_tunnel(head: bytes) -> bytes:
    lines = head.split(b"\r\n")
    for i, line in enumerate(lines):
        if line.lower().startswith(b"sec-websocket-protocol:"):
            lines[i] = line.replace(TUNNEL_PREFIX.encode(), _TUNNEL_ALIAS.encode())
    return b"\r\n".join(lines)


class WsSession:
    """One WebSocket connection after the handshake, with the k8s channels as streams."""

    transport = "websocket"

    def __init__(self, proto: ServerProtocol, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, subprotocol: str,
                 channels: dict[str, int] | None = None) -> None:
        self.proto = proto
        self.reader = reader
        self.writer = writer
        self.text = subprotocol in TEXT_PROTOCOLS
        self.v5 = subprotocol == "v5.channel.k8s.io"
        self.streams = {n: Stream(c, {"streamtype": [n]})
                        for n, c in (channels or CHANNELS).items()}
        self._by_channel = {s.id: s for s in self.streams.values()}
        self._lock = asyncio.Lock()
        self.bytes_in = 0
        self.bytes_out = 0
        self.closed = asyncio.Event()

    async def _flush(self) -> None:
        data = b"".join(self.proto.data_to_send())
        if data and not self.writer.is_closing():
            self.writer.write(data)
            with contextlib.suppress(ConnectionError):
                await self.writer.drain()

    async def open_streams(self, want: set[str]) -> dict[str, Stream]:
        return {n: self.streams[n] for n in want}

    async def serve(self) -> None:
        try:
            while data := await self.reader.read(65536):
                self.proto.receive_data(data)
                for frame in self.proto.events_received():
                    if isinstance(frame, Frame):
                        await self._on_frame(frame.opcode, bytes(frame.data))
                async with self._lock:
                    await self._flush()  # pongs, close answers
                if self.proto.close_rcvd is not None:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            for st in self.streams.values():
                st.end_remote()
            self.closed.set()

    async def _on_frame(self, opcode: Opcode, payload: bytes) -> None:
        if opcode not in (Opcode.BINARY, Opcode.TEXT):
            return
        decoded = decode(payload, self.text)
        if decoded is None:
            return
        channel, data = decoded
        if channel == CLOSE_SIGNAL and self.v5 and data:
            closing = self._by_channel.get(data[0])
            if closing is not None:
                closing.end_remote()
            return
        st = self._by_channel.get(channel)
        if st is not None and data and not st.closed_remote:
            self.bytes_in += len(data)
            st.inbox.put_nowait(data)

    async def send(self, st: Stream, data: bytes, fin: bool = False) -> None:
        if st.closed_local or not data:
            st.closed_local = st.closed_local or fin
            return
        async with self._lock:
            if self.proto.state is not State.OPEN:
                return  # the connection is closing: nothing more goes out
            for i in range(0, len(data), 32 * 1024):
                chunk = data[i:i + 32 * 1024]
                self.bytes_out += len(chunk)
                if self.text:
                    self.proto.send_text(encode(st.id, chunk, True))
                else:
                    self.proto.send_binary(encode(st.id, chunk, False))
            await self._flush()
        if fin:
            st.closed_local = True

    async def close_stream(self, st: Stream) -> None:
        st.closed_local = True  # a channel ends with the connection

    async def close(self) -> None:
        async with self._lock:
            with contextlib.suppress(Exception):
                self.proto.send_close(1000)
                await self._flush()
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


# --- SPDY over WebSocket ------------------------------------------------------------------
class Tunnel:
    """A byte stream carried in a WebSocket connection's binary messages, as client-go's
    TunnelingConnection frames it: whatever we write is one binary message; what the client
    sends is read across message boundaries. ``readexactly`` pulls from the socket only when
    it needs more (the SPDY reader's own pace: no buffering beyond one read), and answers
    pings and the close handshake on the way."""

    def __init__(self, proto: ServerProtocol, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.proto = proto
        self._reader = reader
        self._writer = writer
        self._buf = bytearray()
        self._eof = False

    # the reader's side (what spdy.Codec.read uses)
    async def readexactly(self, n: int) -> bytes:
        while len(self._buf) < n and not self._eof:
            data = await self._reader.read(65536)
            if not data:
                self._eof = True
                break
            self.proto.receive_data(data)
            for event in self.proto.events_received():
                if not isinstance(event, Frame):
                    continue
                if event.opcode in (Opcode.BINARY, Opcode.CONT):
                    self._buf += event.data
                elif event.opcode == Opcode.TEXT:  # client-go refuses these too
                    self._eof = True
            self._send_pending()  # pongs, the close answer
            if self.proto.close_rcvd is not None or self.proto.parser_exc is not None:
                self._eof = True  # closed, or a frame the library refused
        if len(self._buf) < n:
            partial = bytes(self._buf)
            self._buf.clear()
            raise asyncio.IncompleteReadError(partial, n)
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def _send_pending(self) -> None:
        data = b"".join(self.proto.data_to_send())
        if data and not self._writer.is_closing():
            self._writer.write(data)

    # the writer's side (what the SPDY session uses): synchronous, so one frame is one
    # message even with the reader answering pings in between
    def write(self, data: bytes) -> None:
        with contextlib.suppress(Exception):  # after the close handshake: dropped
            self.proto.send_binary(data)
        self._send_pending()

    def writelines(self, data: Iterable[bytes | memoryview]) -> None:
        """A batch of SPDY frames as one message (the client reads a byte stream)."""
        self.write(b"".join(data))

    async def drain(self) -> None:
        await self._writer.drain()

    def is_closing(self) -> bool:
        return self._writer.is_closing()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.proto.send_close(1000)
        self._send_pending()
        self._writer.close()

    async def wait_closed(self) -> None:
        await self._writer.wait_closed()
