"""Files a pod's containers mount: /etc/hostname, /etc/resolv.conf and a /dev/shm tmpfs."""

from __future__ import annotations

import contextlib
import os
import shutil

from cni.fileio import atomic_write
from cni.types import DNSConfig
from podsandbox import kernel

SHM_SIZE = 64 * 1024 * 1024
NODE_RESOLV_CONF = "/etc/resolv.conf"


def render_resolv_conf(dns: DNSConfig) -> str:
    """resolv.conf(5) from the pod's dns_config. Pure."""
    lines = [f"nameserver {s}" for s in dns.servers]
    if dns.searches:
        lines.append("search " + " ".join(dns.searches))
    if dns.options:
        lines.append("options " + " ".join(dns.options))
    return "\n".join(lines) + "\n"


def prepare(sandbox_dir: str, hostname: str, dns: DNSConfig | None) -> None:
    os.makedirs(sandbox_dir, mode=0o711, exist_ok=True)
    atomic_write(os.path.join(sandbox_dir, "hostname"), hostname + "\n")
    resolv = os.path.join(sandbox_dir, "resolv.conf")
    if dns is not None and (dns.servers or dns.searches or dns.options):
        atomic_write(resolv, render_resolv_conf(dns))
    else:
        # No pod DNS: the node's file, as CRI-O and containerd do.
        try:
            shutil.copyfile(NODE_RESOLV_CONF, resolv)
        except OSError:
            atomic_write(resolv, "")


def mount_shm(path: str, size: int = SHM_SIZE, owner: tuple[int, int] = (0, 0)) -> None:
    """The pod's /dev/shm; ``owner``: the node's uid and gid of the pod's root (a pod with a
    user namespace), so that its containers see it as root's."""
    os.makedirs(path, mode=0o755, exist_ok=True)
    kernel.mount(
        "shm", path, "tmpfs", kernel.MS_NOSUID | kernel.MS_NODEV | kernel.MS_NOEXEC,
        f"mode=1777,size={size}" + (f",uid={owner[0]},gid={owner[1]}" if any(owner) else ""),
    )


def remove(sandbox_dir: str, shm_path: str) -> None:
    if shm_path:
        kernel.umount(shm_path)
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(sandbox_dir)
