"""The WebSocket side of the streaming server (pure, in memory): the channel framing (exec's
and the kubelet's port-forward channels, binary and base64), the handshake's subprotocol
choice, and client-go's SPDY-over-WebSocket tunnel, driven by the ``websockets`` library's
own client protocol as the peer."""

from __future__ import annotations

import asyncio

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from shim.streaming import websocket as ws


class _Wire:
    """A StreamWriter stand-in that keeps what was written."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.out += data

    async def drain(self) -> None:
        return None

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    async def wait_closed(self) -> None:
        return None

    def take(self) -> bytes:
        data, self.out = bytes(self.out), bytearray()
        return data


def test_channel_framing_binary_and_base64() -> None:
    assert ws.encode(1, b"out", False) == b"\x01out"
    assert ws.decode(b"\x00in", False) == (0, b"in")
    assert ws.encode(3, b"\x00\xff", True) == b"3AP8="
    assert ws.decode(b"0aGk=", True) == (0, b"hi")
    assert ws.decode(b"", False) is None
    assert ws.decode(b"0***", True) is None  # not base64: dropped, not a crash
    # the kubelet's port-forward: port i on data 2i and error 2i+1, each opened with the
    # port as 2 bytes little-endian
    assert ws.port_prefix(80) == b"\x50\x00" and ws.port_prefix(8080) == b"\x90\x1f"
    assert ws.encode(2, ws.port_prefix(8080), False) == b"\x02\x90\x1f"
    assert ws.encode(11, b"x", True)[:1] == b";"  # "0" + 11, as the kubelet's wsstream


def test_ports_from_query() -> None:
    assert ws.ports_from_query(["80", "8080,9090"]) == [80, 8080, 9090]
    for bad in ([], ["0"], ["x"], ["70000"], [""], ["80,"]):
        with pytest.raises(ValueError):
            ws.ports_from_query(bad)


ALIAS = b"SPDY_3.1+"  # the library's client cannot parse "/" in a subprotocol either


def _client(*subprotocols: str) -> tuple[ClientProtocol, bytes]:
    """A client and its request; client-go's tunnel name as it sends it."""
    client = ClientProtocol(parse_uri("ws://127.0.0.1/portforward/tok?port=80"),
                            subprotocols=[Subprotocol(p.replace("SPDY/", "SPDY_"))
                                          for p in subprotocols] or None)
    client.send_request(client.connect())
    return client, b"".join(client.data_to_send()).replace(ALIAS, b"SPDY/3.1+")


def _answer(client: ClientProtocol, answer: bytes) -> Response:
    if b"SPDY/3.1+" in answer:  # what client-go gets: its own name back
        assert b"\r\nSec-WebSocket-Protocol: SPDY/3.1+portforward.k8s.io\r\n" in answer
    client.receive_data(answer.replace(b"SPDY/3.1+", ALIAS))
    return next(e for e in client.events_received() if isinstance(e, Response))


@pytest.mark.parametrize(("offered", "allow_none", "chosen"), [
    ((ws.TUNNEL_PORTFORWARD,), True, ws.TUNNEL_PORTFORWARD),  # crictl --transport websocket
    (("v4.base64.channel.k8s.io", "v4.channel.k8s.io"), True, "v4.channel.k8s.io"),
    ((), True, ""),  # the kubelet takes a port-forward without a subprotocol (binary)
    ((), False, None),
    (("v9.channel.k8s.io",), True, None),
])
def test_handshake_chooses_a_subprotocol(offered: tuple[str, ...], allow_none: bool,
                                         chosen: str | None) -> None:
    client, head = _client(*offered)
    _, answer, accepted, got = ws.handshake(head, ws.PORTFORWARD_PROTOCOLS, allow_none)
    response = _answer(client, answer)
    if chosen is None:
        assert not accepted and response.status_code == 400
    else:
        assert accepted and response.status_code == 101 and got == chosen
        assert (client.subprotocol or "").replace("SPDY_", "SPDY/") == chosen


def test_tunnel_carries_bytes_across_messages_and_answers_pings() -> None:
    async def go() -> None:
        client, head = _client(ws.TUNNEL_PORTFORWARD)
        proto, answer, accepted, _ = ws.handshake(head, ws.PORTFORWARD_PROTOCOLS, True)
        assert accepted and _answer(client, answer).status_code == 101
        reader, wire = asyncio.StreamReader(), _Wire()
        tunnel = ws.Tunnel(proto, reader, wire)  # type: ignore[arg-type]
        # a 12-byte "frame" split over three messages, a ping in between
        client.send_binary(b"0123")
        client.send_ping(b"p")
        client.send_binary(b"4567")
        client.send_binary(b"89ab" + b"rest")
        reader.feed_data(b"".join(client.data_to_send()))
        assert await tunnel.readexactly(8) == b"01234567"
        assert await tunnel.readexactly(4) == b"89ab"
        client.receive_data(wire.take())
        assert [(f.opcode, f.data) for f in client.events_received()
                if isinstance(f, Frame)] == [(Opcode.PONG, b"p")]
        # each write is one binary message
        tunnel.write(b"\x80\x03\x00\x06reply")
        client.receive_data(wire.take())
        assert [(f.opcode, f.data) for f in client.events_received()
                if isinstance(f, Frame)] == [(Opcode.BINARY, b"\x80\x03\x00\x06reply")]
        # the client's close ends the stream (what is left short is an incomplete read)
        client.send_close(1000)
        reader.feed_data(b"".join(client.data_to_send()))
        with pytest.raises(asyncio.IncompleteReadError) as e:
            await tunnel.readexactly(8)
        assert e.value.partial == b"rest"
        client.receive_data(wire.take())  # our answer to the close
        assert any(isinstance(f, Frame) and f.opcode == Opcode.CLOSE
                   for f in client.events_received())

    asyncio.run(go())


def test_portforward_channels_of_a_session() -> None:
    """Port i's data arrives on channel 2i, whatever the client sends on an error channel
    (write-only) or an unknown one is dropped; what we send carries the channel byte."""
    async def go() -> None:
        client, head = _client("v4.channel.k8s.io")
        proto, answer, _, chosen = ws.handshake(head, ws.PORTFORWARD_PROTOCOLS, True)
        client.receive_data(answer)
        client.events_received()
        channels = {f"{n}{i}": 2 * i + c for i in range(2) for n, c in (("data", 0),
                                                                        ("error", 1))}
        reader, wire = asyncio.StreamReader(), _Wire()
        session = ws.WsSession(proto, reader, wire, chosen, channels)  # type: ignore[arg-type]
        serving = asyncio.create_task(session.serve())
        client.send_binary(b"\x02GET / HTTP/1.0\r\n\r\n")
        client.send_binary(b"\x00to port 0")
        client.send_binary(b"\x07nobody")
        reader.feed_data(b"".join(client.data_to_send()))
        assert await session.streams["data1"].read() == b"GET / HTTP/1.0\r\n\r\n"
        assert await session.streams["data0"].read() == b"to port 0"
        await session.send(session.streams["error1"], b"\x90\x1f")
        client.receive_data(wire.take())
        assert [f.data for f in client.events_received() if isinstance(f, Frame)] == \
            [b"\x03\x90\x1f"]
        client.send_close(1000)
        reader.feed_data(b"".join(client.data_to_send()))
        await asyncio.wait_for(serving, 5)
        assert await session.streams["data1"].read() is None  # the connection's end
        await session.send(session.streams["data1"], b"too late")  # dropped, no error

    asyncio.run(go())
