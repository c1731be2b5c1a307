"""shim/server.py: grpcio's threaded server in front of the event loop, with a real client on
a unix socket. Handlers run on the loop; a ready answer is served by the server's thread; a
client that leaves cancels the handler; a stream goes at the client's pace; the thread pool
grows with the calls in flight and shrinks when they stop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from shim.cri import api_pb2 as pb
from shim.cri import api_pb2_grpc
from shim.errors import NotFound, Unimplemented
from shim.server import Server, Workers


def _unimplemented(service: str, method: str, streaming: bool) -> Any:
    async def unary(request: Any) -> Any:
        raise Unimplemented(f"{method} is not implemented ({service})")

    async def stream(request: Any) -> Any:
        raise Unimplemented(f"{method} is not implemented ({service})")
        yield

    return stream if streaming else unary


class Rig:
    """Handlers that record where and how they ran."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.lists = 0
        self.cancelled = asyncio.Event()
        self.produced = 0
        self.closed = asyncio.Event()
        self.big = pb.PodSandboxStatus(id="x" * (1 << 20))

    async def version(self, request: pb.VersionRequest) -> pb.VersionResponse:
        self.threads.append(threading.current_thread())
        return pb.VersionResponse(runtime_name="tether", runtime_version=request.version)

    async def list_pods(self, request: pb.ListPodSandboxRequest) -> pb.ListPodSandboxResponse:
        self.lists += 1
        return pb.ListPodSandboxResponse(items=[pb.PodSandbox(id="from-the-loop")])

    def ready(self, request: pb.ListPodSandboxRequest) -> bytes | None:
        if request.HasField("filter"):
            return None
        return pb.ListPodSandboxResponse(items=[pb.PodSandbox(id="prepared")]).SerializeToString()

    async def status(self, request: pb.PodSandboxStatusRequest) -> Any:
        if request.pod_sandbox_id == "slow":
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        raise NotFound(f'pod sandbox "{request.pod_sandbox_id}" not found')

    async def events(self, request: Any) -> AsyncIterator[pb.ContainerEventResponse]:
        try:
            for i in range(1000):
                self.produced += 1
                # big, as HTTP/2's flow-control window holds many small ones
                yield pb.ContainerEventResponse(container_id=f"c{i}",
                                                pod_sandbox_status=self.big)
        finally:
            self.closed.set()

    def handlers(self) -> dict[str, tuple[Callable[[Any], Any], Any]]:
        return {
            "Version": (self.version, None),
            "ListPodSandbox": (self.list_pods, self.ready),
            "PodSandboxStatus": (self.status, None),
            "GetContainerEvents": (self.events, None),
        }


def _serve(tmp_path: Path, rig: Rig, body: Callable[[api_pb2_grpc.RuntimeServiceStub], Any],
           workers: Workers | None = None) -> Any:
    async def main() -> Any:
        sock = str(tmp_path / "s.sock")
        server = Server(asyncio.get_running_loop(), sock, rig.handlers(), _unimplemented,
                        workers)
        server.start()
        try:
            with grpc.insecure_channel(f"unix://{sock}") as channel:
                return await asyncio.to_thread(body, api_pb2_grpc.RuntimeServiceStub(channel))
        finally:
            await server.stop(1)

    return asyncio.run(main())


def test_a_call_runs_on_the_loop_and_a_ready_answer_on_the_thread(tmp_path: Path) -> None:
    rig = Rig()

    def body(stub: api_pb2_grpc.RuntimeServiceStub) -> Any:
        return (stub.Version(pb.VersionRequest(version="v1")),
                stub.ListPodSandbox(pb.ListPodSandboxRequest()),
                stub.ListPodSandbox(pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(id="x"))))

    loop_thread = threading.current_thread()
    version, ready, filtered = _serve(tmp_path, rig, body)
    assert (version.runtime_name, version.runtime_version) == ("tether", "v1")
    assert rig.threads == [loop_thread]
    assert [p.id for p in ready.items] == ["prepared"]
    assert [p.id for p in filtered.items] == ["from-the-loop"]
    assert rig.lists == 1


def test_errors_are_statuses_and_a_client_that_leaves_cancels_the_handler(
        tmp_path: Path) -> None:
    rig = Rig()

    def body(stub: api_pb2_grpc.RuntimeServiceStub) -> list[tuple[Any, str]]:
        out = []
        for call in (lambda: stub.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id="p")),
                     lambda: stub.RemoveContainer(pb.RemoveContainerRequest(container_id="c")),
                     lambda: list(stub.StreamContainers(pb.StreamContainersRequest())),
                     lambda: stub.PodSandboxStatus(
                         pb.PodSandboxStatusRequest(pod_sandbox_id="slow"), timeout=0.3)):
            with pytest.raises(grpc.RpcError) as info:
                call()
            out.append((info.value.code(), info.value.details()))
        return out

    async def wait_cancelled() -> None:
        await asyncio.wait_for(rig.cancelled.wait(), 5)

    got = _serve(tmp_path, rig, body)
    assert got[0] == (grpc.StatusCode.NOT_FOUND, 'pod sandbox "p" not found')
    assert got[1][0] == grpc.StatusCode.UNIMPLEMENTED and "RemoveContainer" in got[1][1]
    assert got[2] == (grpc.StatusCode.UNIMPLEMENTED,
                      "StreamContainers is not implemented (RuntimeService)")
    assert got[3][0] == grpc.StatusCode.DEADLINE_EXCEEDED
    assert rig.cancelled.is_set()  # set on the loop before the server stopped


def test_a_stream_goes_at_the_clients_pace_and_ends_when_it_leaves(tmp_path: Path) -> None:
    rig = Rig()

    def body(stub: api_pb2_grpc.RuntimeServiceStub) -> list[str]:
        stream = stub.GetContainerEvents(pb.GetEventsRequest())
        got = [next(stream).container_id for _ in range(3)]
        time.sleep(0.3)  # the loop would make all 1000 now if nothing held it back
        stream.cancel()
        return got

    assert _serve(tmp_path, rig, body) == ["c0", "c1", "c2"]
    # what HTTP/2's window holds (a few MiB) and the pump's one: not 1000
    assert rig.produced <= 3 + 16, rig.produced
    assert rig.closed.is_set()


def test_workers_grow_with_calls_in_flight_and_shrink_when_idle() -> None:
    workers = Workers(limit=4, idle=0.2)
    gate = threading.Event()
    futures = [workers.submit(gate.wait, 5) for _ in range(6)]
    time.sleep(0.1)
    assert workers.threads == 4  # the limit; two calls wait for a thread
    gate.set()
    assert all(f.result(5) for f in futures)
    deadline = time.monotonic() + 5
    while workers.threads and time.monotonic() < deadline:
        time.sleep(0.05)
    assert workers.threads == 0
    # and grows again from nothing
    assert workers.submit(lambda: 7).result(5) == 7
    workers.shutdown()
