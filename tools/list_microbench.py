"""In-process micro-benchmark of the polled List calls (ListPodSandbox, ListContainers) with
N pods of one container each, records shaped like the bench's density workload.

Three layers, each timed alone so a change can be placed:
  handler    the registered handler coroutine (memoised messages, the response built)
  edge       + the interceptor's bookkeeping and the response's serialisation (the call
             handed to the loop: ``run_unary``)
  ready      the server thread's path: the prepared answer and its bookkeeping
  grpc       the daemon's server (``shim.server``) with Tether's handlers, in a child process
             on a unix socket, logging a JSON line per call to a file as the bench's daemon
             does; a sync client here (as the bench's), unfiltered calls interleaved

    .venv/bin/python tools/list_microbench.py [--pods 110] [--calls 2000]

Medians (p50) and p90 in microseconds. Not the bench: no daemon, no runtimes, no kubelet.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import grpc

from podsandbox.types import SandboxDetails, State
from shim import interceptor, log, rpc
from shim.containers.types import CState
from shim.cri import api_pb2 as pb
from shim.cri import api_pb2_grpc
from shim.daemon import _unimplemented
from shim.server import Server
from shim.store import ContainerRecord, SandboxRecord, Store

CALLS = ("ListPodSandbox", "ListContainers")


def fill(path: str, pods: int) -> Store:
    store = Store(path)
    writes: list[Any] = []
    for i in range(pods):
        sid, cid = secrets.token_hex(32), secrets.token_hex(32)
        writes.append((store.sandboxes, SandboxRecord(
            id=sid, name=f"bench-x-tether-{i}", namespace="tether-bench",
            uid=secrets.token_hex(16), state=State.READY, created_at=time.time_ns(),
            runtime_handler="runc", labels={"tether-bench": "x"},
            details=SandboxDetails(cgroup=f"tether-bench/pod{i}/tether-{sid}")), False))
        writes.append((store.containers, ContainerRecord(
            id=cid, sandbox_id=sid, name="sleep", state=CState.RUNNING,
            created_at=time.time_ns(), started_at=time.time_ns(),
            image="127.0.0.1:5000/busybox:latest", image_ref="sha256:" + "a" * 64,
            labels={"tether-bench": "x"}), False))
    store.write_sync(writes)
    return store


class Services:
    """What the List handlers touch of the daemon: the store."""

    def __init__(self, store: Store) -> None:
        self.store = store


def _request(name: str) -> Any:
    return getattr(pb, f"{name}Request")()


def _stats(samples: list[float]) -> str:
    s = sorted(samples)
    return f"p50 {statistics.median(s) * 1e6:7.1f}  p90 {s[int(len(s) * 0.9)] * 1e6:7.1f}"


async def _time(fn: Callable[[], Any], calls: int) -> list[float]:
    out = []
    for _ in range(calls):
        t0 = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t0)
    return out


def _serialise(response: Any) -> bytes:
    return response if isinstance(response, bytes) else response.SerializeToString()


async def in_process(store: Store, calls: int) -> None:
    svc = Services(store)
    for name in CALLS:
        handler = rpc.HANDLERS[name]
        ready = rpc.READY[name]
        req = _request(name)
        method = f"/runtime.v1.RuntimeService/{name}"

        async def bare(h: Any = handler, r: Any = req) -> Any:
            return await h(svc, r)

        async def edge(h: Any = handler, r: Any = req, m: str = method) -> Any:
            return _serialise(await interceptor.run_unary(m, lambda q: h(svc, q), r, ()))

        async def off_loop(h: Any = ready, r: Any = req, m: str = method) -> Any:
            started = time.monotonic()
            out = h(svc, r)
            interceptor.answered_here(m, (), started)
            return out

        await _time(bare, 200)  # warm the memo
        print(f"{name:16} handler {_stats(await _time(bare, calls))}")
        await _time(edge, 200)
        print(f"{name:16} edge    {_stats(await _time(edge, calls))}")
        print(f"{name:16} ready   {_stats(await _time(off_loop, calls))}")


async def serve(db: str, sock: str) -> None:
    log.configure("info", "json")  # as the bench runs the daemon (stderr: a file)
    svc = Services(Store(db))
    handlers = {name: (functools.partial(rpc.HANDLERS[name], svc),
                       functools.partial(rpc.READY[name], svc)) for name in CALLS}
    server = Server(asyncio.get_running_loop(), sock, handlers, _unimplemented)
    server.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


def over_grpc(db: str, calls: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        sock = os.path.join(d, "s.sock")
        with open(os.path.join(d, "log"), "w") as logfile:
            child = subprocess.Popen([sys.executable, __file__, "--serve", db, sock],
                                     stdout=subprocess.PIPE, stderr=logfile, text=True)
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
            channel = grpc.insecure_channel(f"unix://{sock}")
            stub = api_pb2_grpc.RuntimeServiceStub(channel)
            samples: dict[str, list[float]] = {n: [] for n in CALLS}
            for i in range(calls + 200):
                for name in CALLS:  # interleaved, as the kubelet's relist
                    t0 = time.perf_counter()
                    getattr(stub, name)(_request(name))
                    if i >= 200:
                        samples[name].append(time.perf_counter() - t0)
            for name in CALLS:
                print(f"{name:16} grpc    {_stats(samples[name])}")
            channel.close()
        finally:
            child.terminate()
            child.wait()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--pods", type=int, default=110)
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--serve", nargs=2, metavar=("DB", "SOCK"))
    args = p.parse_args()
    if args.serve:
        asyncio.run(serve(*args.serve))
        return
    with tempfile.TemporaryDirectory() as d:
        db = os.path.join(d, "tether.db")
        store = fill(db, args.pods)
        # the interceptor logs a line per call, at info, as JSON, as the bench's daemon does
        saved, sys.stderr = sys.stderr, open(os.devnull, "w")  # noqa: SIM115
        log.configure("info", "json")
        try:
            asyncio.run(in_process(store, args.calls))
        finally:
            sys.stderr.close()
            sys.stderr = saved
        store.close()
        over_grpc(db, args.calls)


if __name__ == "__main__":
    main()
