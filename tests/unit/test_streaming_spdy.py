"""SPDY/3.1 framing and the one-time tokens of the streaming server (pure)."""

from __future__ import annotations

import asyncio
import struct
import time
import zlib

from shim.streaming import spdy
from shim.streaming.server import TokenCache, json_objects


def test_dictionary_is_the_specs() -> None:
    # the draft's dictionary is 1423 bytes; peers check its Adler-32 in every header block
    assert len(spdy.DICTIONARY) == 1423
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert spdy.DICTIONARY.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")
    assert zlib.adler32(spdy.DICTIONARY) == 0xE3C6A7C2


def _client_syn_stream(compressor: zlib._Compress, sid: int, headers: dict[str, str],
                       fin: bool = False) -> bytes:
    block = compressor.compress(spdy.encode_headers(headers)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    payload = struct.pack(">IIH", sid, 0, 0) + block
    return struct.pack(">HHI", 0x8003, spdy.SYN_STREAM,
                       ((spdy.FLAG_FIN if fin else 0) << 24) | len(payload)) + payload


def test_frames_round_trip_with_one_zlib_context_per_direction() -> None:
    async def go() -> None:
        client = zlib.compressobj(zdict=spdy.DICTIONARY)
        wire = (_client_syn_stream(client, 1, {"streamtype": "error"})
                + _client_syn_stream(client, 3, {"streamtype": "stdout", "port": "80"})
                + spdy.Codec.data(3, b"hello", fin=True)
                + struct.pack(">HHI", 0x8003, spdy.PING, 4) + struct.pack(">I", 7))
        reader = asyncio.StreamReader()
        reader.feed_data(wire)
        reader.feed_eof()
        codec = spdy.Codec()
        frames = []
        while (f := await codec.read(reader)) is not None:
            frames.append(f)
        assert [(f.type, f.stream_id) for f in frames] == [
            (spdy.SYN_STREAM, 1), (spdy.SYN_STREAM, 3), (0, 3), (spdy.PING, 7)]
        assert frames[1].headers == {"streamtype": ["stdout"], "port": ["80"]}
        assert frames[2].data == b"hello" and frames[2].flags & spdy.FLAG_FIN
        # what we send, a client inflates with its own context
        reply = codec.syn_reply(1, {"a": ["x", "y"]})
        inflate = zlib.decompressobj(zdict=spdy.DICTIONARY)
        assert spdy.decode_headers(inflate.decompress(reply[12:])) == {"a": ["x", "y"]}

    asyncio.run(go())


def test_bad_frames_are_protocol_errors() -> None:
    async def read(wire: bytes) -> object:
        reader = asyncio.StreamReader()
        reader.feed_data(wire)
        reader.feed_eof()
        return await spdy.Codec().read(reader)

    for wire in (struct.pack(">HHI", 0x8002, 1, 0),  # SPDY/2
                 struct.pack(">II", 1, 0xFFFFFF),  # a 16 MiB frame, cut short
                 b"\x80\x03\x00"):  # a cut header
        try:
            asyncio.run(read(wire))
        except spdy.ProtocolError:
            continue
        raise AssertionError(wire)


def test_tokens_are_single_use_bound_and_expire() -> None:
    cache = TokenCache(ttl=0.2)
    t = cache.put("exec", "target")
    assert len(t) == 32 and cache.put("exec", "target") != t
    assert cache.take("attach", t) is None  # bound to its kind (and now used up)
    t = cache.put("exec", "target")
    assert cache.take("exec", t) == "target"
    assert cache.take("exec", t) is None  # once
    t = cache.put("exec", "target")
    time.sleep(0.3)
    assert cache.take("exec", t) is None  # expired
    assert cache.take("exec", "forged") is None


def test_resize_messages_split_anywhere() -> None:
    objs, rest = json_objects(b'{"Width":80,"Height":24}{"Width":1')
    assert objs == [{"Width": 80, "Height": 24}] and rest == b'{"Width":1'
    objs, rest = json_objects(rest + b'00,"Height":40}\n')
    assert objs == [{"Width": 100, "Height": 40}] and rest == b""
