"""A write lands whole or not at all: SIGKILL a writer in the middle of a burst, then check.

The writer uses the daemon's own store code the way the daemon does (asyncio, one transaction
per multi-record write). Each transaction writes one sandbox and three containers that carry a
digest of their payload, so a torn record or a torn transaction is detectable.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shim.store import Store

WRITER = r"""
import asyncio, hashlib, os, sys
from podsandbox.types import SandboxDetails, State
from shim.containers.types import ContainerDetails
from shim.store import Store, SandboxRecord, ContainerRecord

async def main(path):
    store = Store(path)
    n = 0
    while True:
        payload = os.urandom(2048).hex()
        digest = hashlib.sha256(payload.encode()).hexdigest()
        sb = SandboxRecord(id=f"sb{n}", state=State.READY, labels={"sha": digest},
                           details=SandboxDetails(hostname=payload))
        writes = [(store.sandboxes, sb, False)]
        for k in range(3):
            writes.append((store.containers, ContainerRecord(
                id=f"c{n}-{k}", sandbox_id=sb.id, labels={"sha": digest},
                details=ContainerDetails(message=payload)), False))
        if n >= 3:  # churn: delete an older generation in the same transaction
            writes.append((store.sandboxes, SandboxRecord(id=f"sb{n-3}"), True))
            writes += [(store.containers, ContainerRecord(id=f"c{n-3}-{k}"), True)
                       for k in range(3)]
        await store.write(writes)
        n += 1
        if n == 5:
            print("writing", flush=True)

asyncio.run(main(sys.argv[1]))
"""


def _check(path: Path) -> int:
    store = Store(str(path))
    try:
        assert store.integrity_check() == "ok"
        sandboxes = store.sandboxes.list()
        containers = store.containers.list()
        payloads = [(s, s.details.hostname) for s in sandboxes] + \
            [(c, c.details.message) for c in containers]
        for rec, payload in payloads:
            digest = hashlib.sha256(payload.encode()).hexdigest()
            assert rec.labels["sha"] == digest, f"torn record {rec.id}"
        by_sandbox: dict[str, int] = {}
        for c in containers:
            by_sandbox[c.sandbox_id] = by_sandbox.get(c.sandbox_id, 0) + 1
        assert {s.id for s in sandboxes} == set(by_sandbox), "transaction split"
        assert set(by_sandbox.values()) == {3}, "transaction split"
        # Only the last three generations are kept, one transaction at a time.
        assert len(sandboxes) <= 3
        return len(sandboxes)
    finally:
        store.close()


@pytest.mark.parametrize("delay", [0.05, 0.2, 0.5, 1.0])
def test_sigkill_mid_burst_leaves_only_whole_records(tmp_path: Path, delay: float) -> None:
    db = tmp_path / "tether.db"
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    p = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, env=env)
    assert p.stdout is not None
    assert p.stdout.readline().strip() == b"writing"
    time.sleep(delay)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert _check(db) > 0
    # And the store keeps working after the crash.
    store = Store(str(db))
    store.close()
