"""The OCI runtime adapter (runc, crun): the only place that knows their command lines."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any

from shim.errors import FailedPrecondition, Internal, NotFound, trim

RUNTIME_TIMEOUT = 60.0
# How runc and crun say that the process to signal has already exited.
_GONE = ("not running", "process already finished", "No such process")


@dataclass(frozen=True)
class OCIRuntime:
    name: str  # the handler name, e.g. "runc"
    path: str  # the binary
    root: str  # its state directory (--root)

    def argv(self, *args: str) -> list[str]:
        return [self.path, f"--root={self.root}", *args]

    async def _run(self, *args: str, stdin: bytes | None = None,
                   timeout: float = RUNTIME_TIMEOUT) -> bytes:
        proc = await asyncio.create_subprocess_exec(
            *self.argv(*args),
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise Internal(f"{self.name} {args[0]} timed out after {timeout}s") from None
        if proc.returncode != 0:
            text = err.decode(errors="replace")
            if "does not exist" in text or "not found" in text.lower():
                raise NotFound(f"{self.name} {args[0]}: {trim(text)}", detail=text)
            raise Internal(f"{self.name} {args[0]} failed: {trim(text)}", detail=text)
        return out

    async def start(self, container_id: str) -> None:
        await self._run("start", container_id)

    async def kill(self, container_id: str, signal: str, all_processes: bool = False) -> None:
        args = ["kill", *(["--all"] if all_processes else []), container_id, signal]
        try:
            await self._run(*args)
        except Internal as e:
            # Already gone is fine: the caller waits for the exit either way.
            if any(x in e.message for x in _GONE):
                return
            raise

    async def delete(self, container_id: str) -> None:
        with contextlib.suppress(NotFound):
            await self._run("delete", "--force", container_id)

    async def update(self, container_id: str, resources: dict[str, Any]) -> None:
        try:
            await self._run("update", "--resources", "-", container_id,
                            stdin=json.dumps(resources).encode())
        except Internal as e:
            raise FailedPrecondition(
                f"cannot update resources of container {container_id}: {e.message}",
                detail=e.detail) from None
