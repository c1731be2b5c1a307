"""sd_notify(3) for ``Type=notify`` units: one datagram to ``$NOTIFY_SOCKET``.

Twenty lines instead of a dependency: the protocol is a single ``sendto`` of ``KEY=VALUE``
lines (python-systemd would bring libsystemd bindings for this alone). Nothing happens when
the daemon does not run under systemd (no ``NOTIFY_SOCKET``).
"""

from __future__ import annotations

import os
import socket


def notify(*states: str) -> bool:
    """Send e.g. ``notify("READY=1", "STATUS=serving")``; True when a socket took it."""
    path = os.environ.get("NOTIFY_SOCKET", "")
    if not path or not states:
        return False
    if path.startswith("@"):  # an abstract socket
        path = "\0" + path[1:]
    elif not path.startswith("/"):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(path)
            s.sendall("\n".join(states).encode())
    except OSError:
        return False
    return True
