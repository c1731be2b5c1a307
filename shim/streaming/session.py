"""One SPDY connection after the HTTP upgrade: its streams, reading and writing frames."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from shim.streaming import spdy

STREAM_WAIT = 30.0  # how long the client may take to open the streams it asked for


class Writer(Protocol):
    """What a session writes to: an asyncio.StreamWriter, or websocket.Tunnel."""

    def write(self, data: bytes) -> None: ...
    def writelines(self, data: Iterable[bytes | memoryview]) -> None: ...
    async def drain(self) -> None: ...
    def is_closing(self) -> bool: ...
    def close(self) -> None: ...
    async def wait_closed(self) -> None: ...


@dataclass
class Stream:
    id: int
    headers: dict[str, list[str]]
    inbox: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    closed_remote: bool = False
    closed_local: bool = False

    def header(self, name: str) -> str:
        values = self.headers.get(name, [])
        return values[0] if values else ""

    def end_remote(self) -> None:
        """The client will send no more (FIN, reset, or the connection ended)."""
        if not self.closed_remote:
            self.closed_remote = True
            self.inbox.put_nowait(None)

    async def read(self) -> bytes | None:
        """The next data the client sent; None once it half-closed (or reset) the stream."""
        return await self.inbox.get()


class Session:
    transport = "spdy"

    def __init__(self, reader: spdy.Reader, writer: Writer) -> None:
        self.reader = reader
        self.writer = writer
        # room for a batch of frames before drain() waits (the default high mark is 64 KiB)
        transport = getattr(writer, "transport", None)
        if transport is not None:
            transport.set_write_buffer_limits(high=1 << 20)
        self.codec = spdy.Codec()
        self.streams: dict[int, Stream] = {}
        self.new_streams: asyncio.Queue[Stream | None] = asyncio.Queue()
        self._write_lock = asyncio.Lock()
        self.closed = asyncio.Event()
        self.bytes_in = 0
        self.bytes_out = 0

    async def _write(self, *frames: bytes | memoryview) -> None:
        # one writelines and one drain for a batch: per-frame writes and drains cost more
        # than the copying itself at port-forward rates
        async with self._write_lock:
            if self.writer.is_closing():
                return
            self.writer.writelines(frames)
            with contextlib.suppress(ConnectionError):
                await self.writer.drain()

    async def serve(self) -> None:
        """Read frames until the connection ends; new streams are answered and queued."""
        try:
            while True:
                frame = await self.codec.read(self.reader)
                if frame is None:
                    break
                if not frame.control:
                    await self._on_data(frame)
                elif frame.type == spdy.SYN_STREAM:
                    st = Stream(frame.stream_id, frame.headers)
                    self.streams[st.id] = st
                    await self._write(self.codec.syn_reply(st.id))
                    if frame.flags & spdy.FLAG_FIN:
                        st.end_remote()
                    self.new_streams.put_nowait(st)
                elif frame.type == spdy.RST_STREAM:
                    reset = self.streams.get(frame.stream_id)
                    if reset is not None:
                        reset.closed_local = True
                        reset.end_remote()
                elif frame.type == spdy.PING:
                    await self._write(self.codec.ping(frame.stream_id))
                elif frame.type == spdy.GOAWAY:
                    break
        except (spdy.ProtocolError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            for st in self.streams.values():
                st.end_remote()
            self.new_streams.put_nowait(None)
            self.closed.set()

    async def open_streams(self, want: set[str]) -> dict[str, Stream]:
        """Wait (bounded) until the client has opened the streams it asked for, by their
        ``streamtype``."""
        got: dict[str, Stream] = {}
        deadline = time.monotonic() + STREAM_WAIT
        while not want <= set(got):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"streams {sorted(want - set(got))} never came")
            st = await asyncio.wait_for(self.new_streams.get(), left)
            if st is None:
                raise ConnectionError("client gone before opening its streams")
            got[st.header("streamtype")] = st
        return got

    async def _on_data(self, frame: spdy.Frame) -> None:
        st = self.streams.get(frame.stream_id)
        if st is None:
            await self._write(self.codec.rst(frame.stream_id, spdy.RST_INVALID_STREAM))
            return
        if frame.data:
            self.bytes_in += len(frame.data)
            st.inbox.put_nowait(frame.data)
            # grant the window back at once: a client that counts it never stalls
            await self._write(self.codec.window_update(st.id, len(frame.data)))
        if frame.flags & spdy.FLAG_FIN:
            st.end_remote()

    async def send(self, st: Stream, data: bytes, fin: bool = False) -> None:
        if st.closed_local:
            return
        view = memoryview(data)
        frames: list[bytes | memoryview] = []
        for i in range(0, len(data), spdy.DATA_CHUNK):
            chunk = view[i:i + spdy.DATA_CHUNK]
            last = fin and i + spdy.DATA_CHUNK >= len(data)
            frames += (spdy.Codec.data_header(st.id, len(chunk), last), chunk)
        self.bytes_out += len(data)
        if fin and not data:
            frames.append(spdy.Codec.data_header(st.id, 0, True))
        if frames:
            await self._write(*frames)
        if fin:
            st.closed_local = True

    async def close_stream(self, st: Stream) -> None:
        await self.send(st, b"", fin=True)

    async def close(self) -> None:
        last = max(self.streams, default=0)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self._write(self.codec.goaway(last))
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()
