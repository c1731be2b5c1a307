"""The CRI gRPC server: grpcio's threaded server in front of the daemon's event loop.

Every handler lives on the asyncio loop (its state is the loop's). grpcio's threaded server
accepts the calls: a thread hands each one to the loop (``run_coroutine_threadsafe``) and
waits for its answer, except a call whose handler registered a ``ready`` (``shim.rpc.registry``)
and for which that returns a response prepared earlier: the kubelet's relist (unfiltered
ListPodSandbox / ListContainers) is answered by the thread itself, from bytes serialised
when the table last changed. Why not grpc.aio: measured (docs/benchmarks.md), a grpc.aio call
costs ~130 µs more than a threaded server's, as each completion goes from grpcio's polling
thread to the loop; on the polled Lists that was most of the gap to containerd. The calls that
go to the loop cost what they did under grpc.aio (the same one hand-over).

Threads: one per call in flight (a long StopContainer, ExecSync or the event stream holds its
own), started as needed up to ``MAX_THREADS`` and ended after ``IDLE_SECONDS`` without work,
so an idle daemon keeps a few.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Any

import grpc

from shim import interceptor, tracing
from shim.cri import api_pb2

MAX_THREADS = 512  # beyond it, calls wait for a thread (grpcio queues them)
IDLE_SECONDS = 30.0

Behavior = Callable[[Any], Any]  # request -> awaitable response, or an async iterator
Ready = Callable[[Any], Any]  # request -> a prepared response, or None


class Workers(concurrent.futures.Executor):
    """A thread pool that grows to ``limit`` threads as calls come and shrinks when they stop
    (the stdlib's ThreadPoolExecutor never ends a thread: a burst of 200 StopContainers would
    keep 200 threads for good)."""

    def __init__(self, limit: int = MAX_THREADS, idle: float = IDLE_SECONDS,
                 name: str = "rpc") -> None:
        self._limit = limit
        self._idle_seconds = idle
        self._name = name
        self._work: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        # Threads waiting for work less the queued items that claimed one: a submit claims
        # one or, with none, starts a thread. An item queued at the limit (unclaimed) costs
        # the claim of the thread that takes it. A thread counts itself in before each wait
        # but its first (its starter claimed it) and out when it leaves.
        self._free = 0
        self._threads = 0
        self._closed = False

    @property
    def threads(self) -> int:
        return self._threads

    def submit(self, fn: Callable[..., Any], /, *args: Any,
               **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker pool is shut down")
            claimed = self._free > 0
            if claimed:
                self._free -= 1
            elif self._threads < self._limit:  # a new thread, this item's from its start
                self._threads += 1
                claimed = True
                threading.Thread(target=self._run, name=f"{self._name}-{self._threads}",
                                 daemon=True).start()
            self._work.put(_Work(future, fn, args, kwargs, claimed))
        return future

    def _run(self) -> None:
        first = True
        while True:
            if not first:
                with self._lock:
                    self._free += 1
            first = False
            try:
                work = self._work.get(timeout=self._idle_seconds)
            except queue.Empty:
                with self._lock:
                    if self._free > 0:  # no queued item counts on this thread: leave
                        self._free -= 1
                        self._threads -= 1
                        return
                first = True  # a claimed item is on its way: wait again, not counted twice
                continue
            if work is None:
                return
            if not work.claimed:
                with self._lock:
                    self._free -= 1
            work.run()
            del work  # hold nothing of a finished call while idle

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closed = True
            for _ in range(self._threads):
                self._work.put(None)


class _Work:
    __slots__ = ("args", "claimed", "fn", "future", "kwargs")

    def __init__(self, future: concurrent.futures.Future[Any], fn: Callable[..., Any],
                 args: tuple[Any, ...], kwargs: dict[str, Any], claimed: bool) -> None:
        self.future, self.fn, self.args, self.kwargs = future, fn, args, kwargs
        self.claimed = claimed

    def run(self) -> None:
        if self.future.set_running_or_notify_cancel():
            try:
                self.future.set_result(self.fn(*self.args, **self.kwargs))
            except BaseException as e:  # handed to whoever waits on the future
                self.future.set_exception(e)


def _prepared(response: Any) -> bytes:
    """A response serialiser that passes a prepared answer's bytes through."""
    return response if isinstance(response, bytes) else response.SerializeToString()


class Server:
    """The CRI services of ``api_pb2`` on one unix socket, each method's handler run on
    ``loop``. ``handlers[name]`` is ``(behavior, ready)``; a method without one gets
    ``unimplemented(service, name, server_streaming)``, which answers UNIMPLEMENTED."""

    def __init__(self, loop: asyncio.AbstractEventLoop, address: str,
                 handlers: dict[str, tuple[Behavior, Ready | None]],
                 unimplemented: Callable[[str, str, bool], Behavior],
                 workers: Workers | None = None) -> None:
        self._loop = loop
        self._workers = workers or Workers()
        self._server = grpc.server(self._workers)
        for service in api_pb2.DESCRIPTOR.services_by_name.values():
            methods: dict[str, grpc.RpcMethodHandler] = {}
            for m in service.methods:
                behavior, ready = handlers.get(m.name) or (
                    unimplemented(service.name, m.name, m.server_streaming), None)
                path = f"/{service.full_name}/{m.name}"
                decode = interceptor.safe(getattr(api_pb2, m.input_type.name).FromString)
                if m.server_streaming:
                    methods[m.name] = grpc.unary_stream_rpc_method_handler(
                        self._stream(path, behavior), request_deserializer=decode,
                        response_serializer=_prepared)
                else:
                    methods[m.name] = grpc.unary_unary_rpc_method_handler(
                        self._unary(path, behavior, ready), request_deserializer=decode,
                        response_serializer=_prepared)
            self._server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(service.full_name, methods),))
            self._server.add_registered_method_handlers(service.full_name, methods)
        self._server.add_insecure_port(f"unix://{address}")

    def start(self) -> None:
        self._server.start()

    async def stop(self, grace: float) -> None:
        """Refuse new calls; let those in flight finish for ``grace`` seconds (the loop keeps
        running them meanwhile), then cancel the rest."""
        done = self._server.stop(grace)
        await asyncio.to_thread(done.wait)
        self._workers.shutdown(wait=False)

    def _unary(self, path: str, behavior: Behavior, ready: Ready | None
               ) -> Callable[[Any, grpc.ServicerContext], Any]:
        loop = self._loop

        def handler(request: Any, context: grpc.ServicerContext) -> Any:
            started = time.monotonic()
            metadata = context.invocation_metadata() or ()
            if ready is not None and not tracing.enabled() and \
                    not isinstance(request, interceptor.Undecodable):
                response = ready(request)
                if response is not None:
                    interceptor.answered_here(path, metadata, started)
                    return response
            future = asyncio.run_coroutine_threadsafe(
                interceptor.run_unary(path, behavior, request, metadata), loop)
            context.add_callback(future.cancel)  # the client left: the handler's task too
            try:
                return future.result()
            except interceptor.Refused as r:
                context.abort(r.code, r.message)
            except concurrent.futures.CancelledError:
                context.abort(grpc.StatusCode.CANCELLED, f"{path}: cancelled")

        return handler

    def _stream(self, path: str, behavior: Behavior
                ) -> Callable[[Any, grpc.ServicerContext], Iterator[Any]]:
        loop = self._loop

        def handler(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            items: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
            taken = asyncio.Semaphore(0)  # the thread took an item: the loop may make the next
            pump = asyncio.run_coroutine_threadsafe(_pump(
                interceptor.run_stream(path, behavior, request,
                                       context.invocation_metadata() or ()), items, taken),
                loop)
            context.add_callback(pump.cancel)
            try:
                while True:
                    kind, value = items.get()
                    if kind == "item":
                        yield value
                        loop.call_soon_threadsafe(taken.release)
                    elif kind == "refused":
                        context.abort(value.code, value.message)
                    else:
                        return
            finally:
                pump.cancel()

        return handler


async def _pump(stream: AsyncGenerator[Any, None], items: queue.SimpleQueue[tuple[str, Any]],
                taken: asyncio.Semaphore) -> None:
    """Run a stream on the loop, handing its items to the server's thread one at a time (the
    next is made once the thread took the last: the client's pace, no buffer)."""
    try:
        async for item in stream:
            items.put(("item", item))
            await taken.acquire()
    except interceptor.Refused as r:
        items.put(("refused", r))
    finally:
        items.put(("end", None))
        # closed here, not by the loop's finaliser: its bookkeeping ends in this task's context
        await stream.aclose()
