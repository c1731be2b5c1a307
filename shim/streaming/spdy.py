"""SPDY/3.1 framing, as the Kubernetes streaming clients speak it (kubectl, the kubelet's
proxy, crictl: moby/spdystream on a hijacked HTTP/1.1 connection).

No maintained SPDY library exists for Python (the protocol was retired for HTTP/2), so this
is a small one of our own, from the draft's frame layouts (draft-mbelshe-httpbis-spdy-00):

- every frame has an 8-byte header. Control frames: ``1 | version(15) | type(16) |
  flags(8) | length(24)``; data frames: ``0 | stream-id(31) | flags(8) | length(24)``.
- SYN_STREAM (1): stream-id, associated-id, priority (3 bits) and slot, then a header block.
  SYN_REPLY (2): stream-id, header block. RST_STREAM (3): stream-id, status. SETTINGS (4),
  PING (6, echoed back), GOAWAY (7), HEADERS (8), WINDOW_UPDATE (9).
- FLAG_FIN (1) ends a stream's direction; FLAG_UNIDIRECTIONAL (2) on SYN_STREAM.
- a header block is ``count(32)`` then ``len(32) name len(32) value`` pairs (values with
  several parts are NUL-joined), zlib-compressed with one context per direction for the
  whole connection, seeded with the spec's dictionary, each block ending in a sync flush.

Only what a server for those clients needs: it answers SYN_STREAMs, reads and writes data,
echoes PINGs and takes SETTINGS/WINDOW_UPDATE (the clients do no flow control; we grant
window anyway so a client that does is never stalled).
"""

from __future__ import annotations

import asyncio
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = (
    1, 2, 3, 4, 6, 7, 8, 9)
FLAG_FIN = 0x01
MAX_FRAME = 16 << 20  # a frame longer than this is a protocol error here
DATA_CHUNK = 32 * 1024
RST_PROTOCOL_ERROR, RST_INVALID_STREAM, RST_REFUSED_STREAM, RST_CANCEL = 1, 2, 3, 5


def _dictionary() -> bytes:
    """The SPDY/3 header-compression dictionary (draft section 2.6.10.1): these words, each
    with a 32-bit big-endian length before it, then the tail text as it stands."""
    names = (
        "options head post put delete trace accept accept-charset accept-encoding "
        "accept-language accept-ranges age allow authorization cache-control connection "
        "content-base content-encoding content-language content-length content-location "
        "content-md5 content-range content-type date etag expect expires from host if-match "
        "if-modified-since if-none-match if-range if-unmodified-since last-modified location "
        "max-forwards pragma proxy-authenticate proxy-authorization range referer retry-after "
        "server te trailer transfer-encoding upgrade user-agent vary via warning "
        "www-authenticate method get status")
    words = [*names.split(" "), "200 OK", "version", "HTTP/1.1", "url", "public",
             "set-cookie", "keep-alive", "origin"]
    tail = (
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417"
        "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently"
        "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error"
        "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct "
        "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,"
        "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
        "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8"
        "charset=iso-8859-1,utf-,*,enq=0.")
    out = b"".join(struct.pack(">I", len(w)) + w.encode() for w in words)
    return out + tail.encode()


DICTIONARY = _dictionary()


class Reader(Protocol):
    """Where frames are read from: an asyncio.StreamReader, or websocket.Tunnel."""

    async def readexactly(self, n: int) -> bytes: ...


class ProtocolError(Exception):
    pass


def encode_headers(headers: Mapping[str, str | list[str]]) -> bytes:
    out = [struct.pack(">I", len(headers))]
    for name, value in headers.items():
        v = "\0".join(value) if isinstance(value, list) else value
        n, b = name.lower().encode(), v.encode()
        out += [struct.pack(">I", len(n)), n, struct.pack(">I", len(b)), b]
    return b"".join(out)


def decode_headers(block: bytes) -> dict[str, list[str]]:
    def take(pos: int) -> tuple[bytes, int]:
        if pos + 4 > len(block):
            raise ProtocolError("truncated header block")
        (n,) = struct.unpack_from(">I", block, pos)
        if pos + 4 + n > len(block):
            raise ProtocolError("truncated header block")
        return block[pos + 4: pos + 4 + n], pos + 4 + n

    if len(block) < 4:
        raise ProtocolError("truncated header block")
    (count,) = struct.unpack_from(">I", block, 0)
    pos, out = 4, {}
    for _ in range(count):
        name, pos = take(pos)
        value, pos = take(pos)
        out[name.decode(errors="replace").lower()] = value.decode(errors="replace").split("\0")
    return out


@dataclass
class Frame:
    control: bool
    type: int  # control frame type; 0 for data
    flags: int
    stream_id: int
    data: bytes = b""  # data frames: the payload; control frames: what follows the ids
    headers: dict[str, list[str]] = field(default_factory=dict)
    status: int = 0  # RST_STREAM / GOAWAY


class Codec:
    """One connection's two zlib contexts and the frame layouts."""

    def __init__(self) -> None:
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15,
                                         zdict=DICTIONARY)

    def _block(self, headers: Mapping[str, str | list[str]]) -> bytes:
        raw = encode_headers(headers)
        return self._deflate.compress(raw) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    def _unblock(self, data: bytes) -> dict[str, list[str]]:
        try:
            raw = self._inflate.decompress(data)
        except zlib.error as e:
            raise ProtocolError(f"header block does not inflate: {e}") from None
        return decode_headers(raw)

    @staticmethod
    def _control(kind: int, flags: int, payload: bytes) -> bytes:
        return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload)) + payload

    def syn_reply(self, stream_id: int, headers: Mapping[str, str | list[str]] | None = None,
                  fin: bool = False) -> bytes:
        payload = struct.pack(">I", stream_id) + self._block(headers or {})
        return self._control(SYN_REPLY, FLAG_FIN if fin else 0, payload)

    def rst(self, stream_id: int, status: int) -> bytes:
        return self._control(RST_STREAM, 0, struct.pack(">II", stream_id, status))

    def ping(self, ping_id: int) -> bytes:
        return self._control(PING, 0, struct.pack(">I", ping_id))

    def goaway(self, last_stream: int, status: int = 0) -> bytes:
        return self._control(GOAWAY, 0, struct.pack(">II", last_stream, status))

    def window_update(self, stream_id: int, delta: int) -> bytes:
        return self._control(WINDOW_UPDATE, 0, struct.pack(">II", stream_id, delta))

    @staticmethod
    def data_header(stream_id: int, length: int, fin: bool = False) -> bytes:
        return struct.pack(">II", stream_id & 0x7FFFFFFF, ((FLAG_FIN if fin else 0) << 24) | length)

    @staticmethod
    def data(stream_id: int, payload: bytes, fin: bool = False) -> bytes:
        return Codec.data_header(stream_id, len(payload), fin) + payload

    async def read(self, reader: Reader) -> Frame | None:
        """The next frame; None at a clean end of the connection."""
        try:
            head = await reader.readexactly(8)
        except asyncio.IncompleteReadError as e:
            if not e.partial:
                return None
            raise ProtocolError("connection ended inside a frame header") from None
        first, second = struct.unpack(">II", head)
        flags, length = second >> 24, second & 0xFFFFFF
        if length > MAX_FRAME:
            raise ProtocolError(f"frame of {length} bytes")
        try:
            payload = await reader.readexactly(length)
        except asyncio.IncompleteReadError:
            raise ProtocolError("connection ended inside a frame") from None
        if not first & 0x80000000:
            return Frame(False, 0, flags, first & 0x7FFFFFFF, payload)
        version, kind = (first >> 16) & 0x7FFF, first & 0xFFFF
        if version != VERSION:
            raise ProtocolError(f"SPDY version {version}, not 3")
        if kind == SYN_STREAM:
            if len(payload) < 10:
                raise ProtocolError("short SYN_STREAM")
            (sid,) = struct.unpack_from(">I", payload, 0)
            return Frame(True, kind, flags, sid & 0x7FFFFFFF,
                         headers=self._unblock(payload[10:]))
        if kind in (SYN_REPLY, HEADERS):
            (sid,) = struct.unpack_from(">I", payload, 0)
            return Frame(True, kind, flags, sid & 0x7FFFFFFF, headers=self._unblock(payload[4:]))
        if kind in (RST_STREAM, GOAWAY, WINDOW_UPDATE):
            if len(payload) < 8:
                raise ProtocolError(f"short control frame {kind}")
            sid, status = struct.unpack_from(">II", payload, 0)
            return Frame(True, kind, flags, sid & 0x7FFFFFFF, status=status)
        if kind == PING:
            (pid,) = struct.unpack_from(">I", payload, 0) if len(payload) >= 4 else (0,)
            return Frame(True, kind, flags, pid)
        return Frame(True, kind, flags, 0, payload)  # SETTINGS and unknown: ignored
