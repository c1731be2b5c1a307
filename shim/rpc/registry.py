"""Maps CRI method names to the handler functions of ``shim.rpc.*`` (one module per call).

A handler is ``async def handler(services, request, context) -> response`` (an async generator
for server-streaming calls), registered with ``@rpc("MethodName")``, or, for a List call and
its Stream twin, with ``list_and_stream``. Methods with no handler answer UNIMPLEMENTED
naming the method. ``services`` is what the handler may touch (``shim.rpc.services``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from shim.rpc.services import Services
from shim.rpc.streaming import chunks

HANDLERS: dict[str, Callable[..., Any]] = {}
T = TypeVar("T")


def rpc(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in HANDLERS:
            raise RuntimeError(f"two handlers for CRI method {name}")
        HANDLERS[name] = fn
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

    async def list_handler(d: Services, req: Any, ctx: object) -> Any:
        return list_response(await select(d, req))

    async def stream_handler(d: Services, req: Any, ctx: object) -> AsyncIterator[Any]:
        for chunk in chunks(await select(d, req)):
            yield stream_response(chunk)

    rpc(list_name)(list_handler)
    rpc(stream_name)(stream_handler)
