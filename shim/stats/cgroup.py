"""CPU, memory, swap and pid counters of a cgroup, on cgroup v1, v2 and hybrid hosts.

Each controller is read where the host has it: a v1 hierarchy when one is mounted for it (on
hybrid hosts the v2 tree usually has no controllers), else the v2 tree. The parsers are pure
functions of file contents; the readers only open a few small files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from podsandbox import cgroups

# The kernel rounds "no limit" to a page multiple below 2**63; anything above this is unlimited.
UNLIMITED = 1 << 62


@dataclass
class CgroupSample:
    """One reading of a cgroup (or a sum of several). ``None``: not available on this host."""

    timestamp: int = 0  # ns since the epoch
    cpu_usage_ns: int | None = None
    memory_usage: int | None = None
    working_set: int | None = None
    memory_limit: int | None = None  # None: unlimited
    rss: int | None = None
    page_faults: int | None = None
    major_page_faults: int | None = None
    swap_usage: int | None = None
    swap_limit: int | None = None  # None: unlimited
    pids: int | None = None
    found: bool = False  # at least one of its files could be read

    @property
    def available_bytes(self) -> int:
        """Limit minus working set (as the kubelet expects); 0 when unlimited."""
        if self.memory_limit is None or self.working_set is None:
            return 0
        return max(self.memory_limit - self.working_set, 0)

    @property
    def swap_available(self) -> int:
        if self.swap_limit is None or self.swap_usage is None:
            return 0
        return max(self.swap_limit - self.swap_usage, 0)


@dataclass(frozen=True)
class Hierarchies:
    """Where to read each controller: v1 mount points by controller, and the v2 mount."""

    v1: dict[str, str] = field(default_factory=dict)
    v2: str | None = None


# --- pure parsers ---------------------------------------------------------------------------
def parse_keyed(text: str) -> dict[str, int]:
    """``memory.stat`` / ``cpu.stat`` style: ``key value`` lines (non-numeric values skipped)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return out


def parse_int(text: str) -> int | None:
    """A single-number file; ``max`` (v2's unlimited) and unparsable text give None."""
    text = text.strip()
    if not text or text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _limit(value: int | None) -> int | None:
    return None if value is None or value >= UNLIMITED else value


def working_set(usage: int, inactive_file: int) -> int:
    """Usage minus inactive file cache, never below 0: what the kubelet's eviction uses."""
    return max(usage - inactive_file, 0)


def memory_v1(usage: str, stat: str, limit: str, memsw_usage: str | None,
              memsw_limit: str | None) -> dict[str, int | None]:
    """v1 memory fields from ``memory.usage_in_bytes``, ``memory.stat`` (hierarchical
    ``total_*`` counters when present), ``memory.limit_in_bytes`` and the memsw files."""
    st = parse_keyed(stat)
    use = parse_int(usage) or 0

    def pick(key: str) -> int | None:
        return st.get(f"total_{key}", st.get(key))

    swap_usage = swap_limit = None
    mu = parse_int(memsw_usage) if memsw_usage is not None else None
    if mu is not None:
        swap_usage = max(mu - use, 0)
        ml = _limit(parse_int(memsw_limit)) if memsw_limit is not None else None
        lim = _limit(parse_int(limit))
        # memsw limits memory+swap: what is left for swap is that minus the memory limit.
        swap_limit = ml - lim if ml is not None and lim is not None else None
    return {
        "memory_usage": use,
        "working_set": working_set(use, pick("inactive_file") or 0),
        "memory_limit": _limit(parse_int(limit)),
        "rss": pick("rss"),
        "page_faults": pick("pgfault"),
        "major_page_faults": pick("pgmajfault"),
        "swap_usage": swap_usage,
        "swap_limit": swap_limit,
    }


def memory_v2(current: str, stat: str, limit: str, swap_current: str | None,
              swap_max: str | None) -> dict[str, int | None]:
    """v2 memory fields from ``memory.current``, ``memory.stat``, ``memory.max`` and
    ``memory.swap.current`` / ``memory.swap.max``."""
    st = parse_keyed(stat)
    use = parse_int(current) or 0
    return {
        "memory_usage": use,
        "working_set": working_set(use, st.get("inactive_file", 0)),
        "memory_limit": _limit(parse_int(limit)),
        "rss": st.get("anon"),
        "page_faults": st.get("pgfault"),
        "major_page_faults": st.get("pgmajfault"),
        "swap_usage": parse_int(swap_current) if swap_current is not None else None,
        "swap_limit": _limit(parse_int(swap_max)) if swap_max is not None else None,
    }


def cpu_v1(usage: str) -> int | None:
    """``cpuacct.usage``: ns."""
    return parse_int(usage)


def cpu_v2(stat: str) -> int | None:
    """``cpu.stat`` ``usage_usec``, in ns."""
    usec = parse_keyed(stat).get("usage_usec")
    return usec * 1000 if usec is not None else None


# --- readers --------------------------------------------------------------------------------
def hierarchies() -> Hierarchies:
    lay = cgroups.layout()
    return Hierarchies(v1=dict(lay.v1), v2=lay.v2)


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:  # gone (container exited), or not on this kernel
        return None


def read(relpath: str, h: Hierarchies, now_ns: int) -> CgroupSample:
    """Read the cgroup ``relpath`` (relative to each hierarchy's root)."""
    rel = relpath.strip("/")
    s = CgroupSample(timestamp=now_ns)
    v2 = os.path.join(h.v2, rel) if h.v2 else None

    if "cpuacct" in h.v1:
        text = _read(os.path.join(h.v1["cpuacct"], rel, "cpuacct.usage"))
        s.cpu_usage_ns = cpu_v1(text) if text is not None else None
    elif v2:
        text = _read(os.path.join(v2, "cpu.stat"))
        s.cpu_usage_ns = cpu_v2(text) if text is not None else None

    mem: dict[str, int | None] | None = None
    if "memory" in h.v1:
        d = os.path.join(h.v1["memory"], rel)
        usage, stat = _read(f"{d}/memory.usage_in_bytes"), _read(f"{d}/memory.stat")
        if usage is not None and stat is not None:
            mem = memory_v1(usage, stat, _read(f"{d}/memory.limit_in_bytes") or "",
                            _read(f"{d}/memory.memsw.usage_in_bytes"),
                            _read(f"{d}/memory.memsw.limit_in_bytes"))
    elif v2:
        current, stat = _read(f"{v2}/memory.current"), _read(f"{v2}/memory.stat")
        if current is not None and stat is not None:
            mem = memory_v2(current, stat, _read(f"{v2}/memory.max") or "",
                            _read(f"{v2}/memory.swap.current"), _read(f"{v2}/memory.swap.max"))
    if mem is not None:
        for k, v in mem.items():
            setattr(s, k, v)

    if "pids" in h.v1:
        text = _read(os.path.join(h.v1["pids"], rel, "pids.current"))
        s.pids = parse_int(text) if text is not None else None
    elif v2:
        text = _read(f"{v2}/pids.current")
        s.pids = parse_int(text) if text is not None else None

    s.found = s.cpu_usage_ns is not None or mem is not None or s.pids is not None
    return s


def oom_kills(relpath: str, h: Hierarchies) -> int:
    """OOM kills in a cgroup: ``oom_kill`` of v1 memory.oom_control, else of v2
    memory.events; 0 when unknown."""
    rel = relpath.strip("/")
    if "memory" in h.v1:
        text = _read(os.path.join(h.v1["memory"], rel, "memory.oom_control"))
    elif h.v2:
        text = _read(os.path.join(h.v2, rel, "memory.events"))
    else:
        return 0
    return parse_keyed(text).get("oom_kill", 0) if text is not None else 0


_SUMMED = ("cpu_usage_ns", "memory_usage", "working_set", "rss", "page_faults",
           "major_page_faults", "swap_usage", "pids")


def total(samples: list[CgroupSample], now_ns: int) -> CgroupSample:
    """The sum of several cgroups (a pod whose parent cgroup other pods share). Limits are
    left unset: the pod as a whole has none of its own there."""
    out = CgroupSample(timestamp=now_ns)
    for s in samples:
        if not s.found:
            continue
        out.found = True
        for name in _SUMMED:
            v = getattr(s, name)
            if v is not None:
                setattr(out, name, (getattr(out, name) or 0) + v)
    return out
