"""Maps CRI method names to the handler functions of ``shim.rpc.*`` (one module per call).

A handler is ``async def handler(services, request) -> response`` (an async generator for
server-streaming calls), registered with ``@rpc("MethodName")``, or, for a List call and its
Stream twin, with ``list_and_stream``. Methods with no handler answer UNIMPLEMENTED naming the
method. ``services`` is what the handler may touch (``shim.rpc.services``).

A handler may also register a ``ready(services, request)``: a response prepared earlier, or
None. It is called on a gRPC server thread, off the event loop, before the handler is handed
to the loop, so it may only read values that are never changed once made (a repository's
prepared answers); the polled List calls answer the kubelet's relist this way without the
trip through the loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from shim.rpc.services import Services
from shim.rpc.streaming import chunks

HANDLERS: dict[str, Callable[..., Any]] = {}
READY: dict[str, Callable[[Services, Any], Any]] = {}
T = TypeVar("T")


def rpc(name: str, ready: Callable[[Services, Any], Any] | None = None
        ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in HANDLERS:
            raise RuntimeError(f"two handlers for CRI method {name}")
        HANDLERS[name] = fn
        if ready is not None:
            READY[name] = ready
        return fn

    return register


def list_and_stream(
    list_name: str,
    stream_name: str,
    select: Callable[[Services, Any], Awaitable[Sequence[T]]],
    list_response: Callable[[Sequence[T]], Any],
    stream_response: Callable[[Sequence[T]], Any],
) -> None:
    """Registers a List call and its server-streaming twin: both answer ``select(services,
    request)`` (their requests carry the same filter), the List call in one message, the
    Stream call in chunks (shim.rpc.streaming)."""

    async def list_handler(d: Services, req: Any) -> Any:
        return list_response(await select(d, req))

    async def stream_handler(d: Services, req: Any) -> AsyncIterator[Any]:
        for chunk in chunks(await select(d, req)):
            yield stream_response(chunk)

    rpc(list_name)(list_handler)
    rpc(stream_name)(stream_handler)
