"""Single-flight: callers asking for the same key while its work runs share one result."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._tasks: dict[Hashable, asyncio.Task[T]] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def running(self, key: Hashable) -> bool:
        return key in self._tasks

    async def do(self, key: Hashable, fn: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """The result of ``fn()`` (run once per key at a time) and whether it was shared.

        The work is a task of its own: a caller that goes away (a cancelled RPC) does not
        cancel it for the others.
        """
        task = self._tasks.get(key)
        shared = task is not None
        if task is None:
            task = asyncio.ensure_future(fn())
            self._tasks[key] = task

            def done(t: asyncio.Task[T], key: Hashable = key) -> None:
                if self._tasks.get(key) is t:
                    del self._tasks[key]
                if not t.cancelled():
                    t.exception()  # retrieved: no "never retrieved" warning if all left

            task.add_done_callback(done)
        return await asyncio.shield(task), shared

    async def cancel_all(self) -> None:
        """Cancel the work under way and wait for it to unwind (its cleanups run)."""
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
