"""Interface counters of a pod's network namespace.

``/sys/class/net`` shows the namespace sysfs was mounted in, not the reader's, so the counters
come from ``/proc/thread-self/net/dev`` read by a short-lived thread that has joined the pod's
namespace (``podsandbox.kernel.in_namespaces``): one small file, no subprocess.
"""

from __future__ import annotations

from dataclasses import dataclass

from podsandbox import kernel

DEFAULT_INTERFACE = "eth0"  # the kubelet's default interface of a pod


@dataclass(frozen=True)
class Interface:
    name: str
    rx_bytes: int
    rx_errors: int
    tx_bytes: int
    tx_errors: int
    rx_packets: int = 0
    rx_dropped: int = 0
    tx_packets: int = 0
    tx_dropped: int = 0


def parse_net_dev(text: str) -> list[Interface]:
    """``/proc/net/dev``: two header lines, then ``name: rx(bytes packets errs drop fifo frame
    compressed multicast) tx(bytes packets errs drop fifo colls carrier compressed)``."""
    out = []
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        if not sep or "|" in line:
            continue
        f = rest.split()
        if len(f) < 16:
            continue
        try:
            out.append(Interface(name.strip(), int(f[0]), int(f[2]), int(f[8]), int(f[10]),
                                 rx_packets=int(f[1]), rx_dropped=int(f[3]),
                                 tx_packets=int(f[9]), tx_dropped=int(f[11])))
        except ValueError:
            continue
    return out


def _read_net_dev() -> str:
    with open("/proc/thread-self/net/dev") as f:
        return f.read()


def read_netns(path: str) -> list[Interface]:
    """Interfaces of the namespace pinned at ``path``, loopback left out."""
    text = kernel.in_namespaces({"net": path}, _read_net_dev)
    return [i for i in parse_net_dev(text) if i.name != "lo"]
