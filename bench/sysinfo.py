"""Machine facts and tool versions for the report."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path


def _first_line(cmd: list[str]) -> str:
    exe = shutil.which(cmd[0])
    if exe is None:
        return "not installed"
    try:
        res = subprocess.run([exe, *cmd[1:]], capture_output=True, text=True, timeout=10,
                             check=False)
    except (OSError, subprocess.SubprocessError) as e:
        return f"error: {e}"
    out = (res.stdout or res.stderr).strip().splitlines()
    return out[0].strip() if out else ""


def tool_versions() -> dict[str, str]:
    return {
        "runc": _first_line(["runc", "--version"]),
        "crun": _first_line(["crun", "--version"]),
        "conmon": _first_line(["conmon", "--version"]),
        "containerd": _first_line(["containerd", "--version"]),
        "catatonit": _first_line(["catatonit", "--version"]),
        "python": platform.python_version(),
    }


def _meminfo_kib(key: str) -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _os_release() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return ""


def _cgroup_layout() -> str:
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():
        return "v2"
    if (root / "unified").is_dir():
        return "hybrid (v1 + v2 at /sys/fs/cgroup/unified)"
    return "v1"


def machine_info() -> dict[str, str | int]:
    return {
        "hostname": platform.node(),
        "cpu_model": _cpu_model(),
        "cpus": os.cpu_count() or 0,
        "memory_mib": _meminfo_kib("MemTotal") // 1024,
        "kernel": platform.release(),
        "os": _os_release(),
        "cgroups": _cgroup_layout(),
    }
