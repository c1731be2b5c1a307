"""ExecSync's pure parts and its process-tree walk (on this test's own children)."""

from __future__ import annotations

import asyncio
import subprocess

from shim.containers import exec_sync
from shim.containers.exec_sync import TRUNCATED, _Budget, _drain


def _stream(data: bytes) -> asyncio.StreamReader:
    r = asyncio.StreamReader()
    r.feed_data(data)
    r.feed_eof()
    return r


def test_stdout_and_stderr_share_one_cap_and_the_cut_is_marked() -> None:
    async def go() -> tuple[bytes, bytes]:
        b = _Budget(1000 + len(TRUNCATED))
        out = await _drain(_stream(b"o" * 700), b)
        err = await _drain(_stream(b"e" * 700), b)
        return out, err

    out, err = asyncio.run(go())
    assert out == b"o" * 700
    assert err == b"e" * 300 + TRUNCATED
    assert len(out) + len(err) == 1000 + len(TRUNCATED)


def test_under_the_cap_nothing_is_marked() -> None:
    async def go() -> bytes:
        return await _drain(_stream(b"hello"), _Budget(1 << 20))

    assert asyncio.run(go()) == b"hello"


def test_process_tree_finds_grandchildren() -> None:
    p = subprocess.Popen(["sh", "-c", "sleep 30 & sleep 31 & wait"])
    try:
        for _ in range(100):
            tree = exec_sync.process_tree(p.pid)
            if len(tree) == 3:
                break
            subprocess.run(["sleep", "0.02"], check=True)
        assert tree[0] == p.pid and len(tree) == 3
    finally:
        for pid in reversed(exec_sync.process_tree(p.pid)):
            subprocess.run(["kill", "-9", str(pid)], check=False)
        p.wait()
