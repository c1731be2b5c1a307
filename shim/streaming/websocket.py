"""The Kubernetes channel protocols over WebSocket (crictl ``--transport websocket``, newer
kubectl and apiservers end to end), on the ``websockets`` library's sans-I/O server protocol
(RFC 6455 handshake, framing, masking, close: a well-kept library; only the channel layer is
ours).

Each binary message is one channel's data, its first byte the channel: 0 stdin, 1 stdout,
2 stderr, 3 error, 4 resize. ``v5.channel.k8s.io`` adds a message ``255, <channel>`` by which
the client closes that channel (stdin); ``base64.channel.k8s.io`` sends text messages, the
channel as an ASCII digit and the data base64-encoded. The streams look like the SPDY ones
to the exec and attach code (``read``, ``send``, ``close_stream``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from shim.streaming.session import Stream

CHANNELS = {"stdin": 0, "stdout": 1, "stderr": 2, "error": 3, "resize": 4}
PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "base64.channel.k8s.io",
             "channel.k8s.io")
CLOSE_SIGNAL = 255


def handshake(head: bytes) -> tuple[ServerProtocol, bytes, str]:
    """From the request's head as received: (protocol, the bytes to answer with, the
    subprotocol chosen, "" when refused)."""
    proto = ServerProtocol(subprotocols=[Subprotocol(p) for p in PROTOCOLS],
                           max_size=4 << 20)
    proto.receive_data(head)  # the library parses the request itself
    request = next((e for e in proto.events_received() if isinstance(e, Request)), None)
    if request is None:
        return proto, b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n", ""
    response = proto.accept(request)
    proto.send_response(response)
    chosen = response.headers.get("Sec-WebSocket-Protocol", "") if response.status_code == 101 \
        else ""
    return proto, b"".join(proto.data_to_send()), chosen


class WsSession:
    """One WebSocket connection after the handshake, with the k8s channels as streams."""

    def __init__(self, proto: ServerProtocol, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, subprotocol: str) -> None:
        self.proto = proto
        self.reader = reader
        self.writer = writer
        self.text = subprotocol == "base64.channel.k8s.io"
        self.v5 = subprotocol == "v5.channel.k8s.io"
        self.streams = {n: Stream(c, {"streamtype": [n]}) for n, c in CHANNELS.items()}
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
        if opcode not in (Opcode.BINARY, Opcode.TEXT) or not payload:
            return
        if self.text:
            try:
                channel, data = int(chr(payload[0])), base64.b64decode(payload[1:])
            except ValueError:
                return
        else:
            channel, data = payload[0], bytes(payload[1:])
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
            for i in range(0, len(data), 32 * 1024):
                chunk = data[i:i + 32 * 1024]
                self.bytes_out += len(chunk)
                if self.text:
                    self.proto.send_text(str(st.id).encode() + base64.b64encode(chunk))
                else:
                    self.proto.send_binary(bytes([st.id]) + chunk)
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
