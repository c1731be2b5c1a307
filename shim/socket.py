"""The CRI socket: never steal a live one, replace a stale one, keep it 0660."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import stat
from typing import IO


class SocketInUse(Exception):
    pass


class SocketGuard:
    """Holds an exclusive lock beside the socket for the daemon's life.

    The lock says "a tether daemon owns this path"; the connect probe catches any other live
    listener. Only when both say free is an existing socket file removed as stale.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock_path = path + ".lock"
        self._lock: IO[str] | None = None

    def acquire(self) -> None:
        directory = os.path.dirname(self.path)
        os.makedirs(directory, mode=0o750, exist_ok=True)
        mode = os.stat(directory).st_mode
        if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
            raise SocketInUse(f"socket directory {directory} is world-writable; refusing to use it")
        lock = open(self.lock_path, "a+")  # noqa: SIM115 - held open for the daemon's life
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            owner = lock.read().strip() or "unknown"
            lock.close()
            raise SocketInUse(
                f"another tether daemon (pid {owner}) is serving on {self.path}"
            ) from None
        if _is_live(self.path):
            lock.close()
            raise SocketInUse(f"{self.path} is in use by another live process; not taking it over")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # stale: nobody listens
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        self._lock = lock

    def secure(self) -> None:
        """Once the server has bound the socket: owner and group only."""
        os.chmod(self.path, 0o660)

    def release(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        if self._lock is not None:
            # The lock file stays: unlinking it would let two daemons lock two different inodes.
            self._lock.close()
            self._lock = None


def _is_live(path: str) -> bool:
    if not os.path.exists(path):
        return False
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(path)
        return True
    except OSError as e:
        if e.errno in (errno.ECONNREFUSED, errno.ENOENT, errno.ENOTSOCK):
            return False
        raise
    finally:
        s.close()
