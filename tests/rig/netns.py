"""Is this process in a network namespace of its own (not the machine's)?

Every server the tests start must live in a network namespace that the test run made
(scripts/test.sh runs pytest under ``unshare --net``), so nothing a test does can reach
the host's network. The reference is PID 1's namespace; where ``/proc/1/ns/net`` cannot be
read (on this kind of machine it cannot, even as root), it is the namespace of the
outermost ancestor of this process whose namespace can be read.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct

from bench.hostenv import host_netns_inode, in_private_netns, netns_inode

__all__ = ["host_netns_inode", "in_private_netns", "netns_inode"]


class NotInPrivateNetns(RuntimeError):
    """Raised when a server would be started in the host's network namespace."""


def assert_private_netns() -> None:
    """Raise NotInPrivateNetns unless this process is in a network namespace of its own."""
    host = host_netns_inode()
    own = netns_inode()
    if host is None:
        raise NotInPrivateNetns(
            "cannot read the network namespace of PID 1 nor of any ancestor process; "
            "refusing to start servers"
        )
    if host == own:
        raise NotInPrivateNetns(
            f"this process (pid {os.getpid()}) is in the host network namespace "
            f"(net:[{own}]); run the tests with scripts/test.sh (or `make test`), which runs "
            "pytest under `unshare --net`"
        )


def loopback_is_up() -> bool:
    """True when ``lo`` is up in this process's network namespace.

    Asked with the SIOCGIFFLAGS ioctl: /sys/class/net shows the namespace that mounted
    /sys, not this one.
    """
    siocgifflags = 0x8913
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH14x", b"lo", 0)
        res = fcntl.ioctl(s.fileno(), siocgifflags, ifreq)
    flags = struct.unpack("16sH14x", res)[1]
    return bool(flags & 0x1)  # IFF_UP
