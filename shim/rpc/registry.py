"""Maps CRI method names to the handler functions of ``shim.rpc.*`` (one module per call).

A handler is ``async def handler(daemon, request, context) -> response`` (an async generator
for server-streaming calls), registered with ``@rpc("MethodName")``. Methods with no handler
answer UNIMPLEMENTED naming the method.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

HANDLERS: dict[str, Callable[..., Any]] = {}


def rpc(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in HANDLERS:
            raise RuntimeError(f"two handlers for CRI method {name}")
        HANDLERS[name] = fn
        return fn

    return register
