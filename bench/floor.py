"""The floor: the same steps as a pod's lifecycle without any CRI daemon.

One floor round does, timing each step:

    pause holder spawn   ``unshare --net --ipc --uts -- catatonit -P`` until catatonit runs
                         in its new namespaces (what a pause-holder design must at least do)
    CNI ADD              the conflist's plugins called directly, in order (CNI 1.0 protocol,
                         prevResult chained), on the holder's network namespace
    runc create          a busybox ``sleep`` bundle joining the holder's net/ipc/uts
    runc start
    runc kill+wait       SIGKILL through ``runc kill``, reaped by this process (a child
                         subreaper, as a shim is)
    runc delete
    CNI DEL              plugins in reverse order, with the ADD result as prevResult
    pause holder stop    SIGTERM to catatonit, reaped
    pod total            the sum (setup work between the steps, e.g. writing the bundle's
                         config.json, is not in it)

and composite steps matching the CRI steps (see FLOOR_FOR_CRI_STEP). The bundle's rootfs is
a copy of the static busybox (an unpacked image can be given instead). The floor creates a
CNI bridge and addresses in the current network namespace: it refuses to run in the
machine's namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import hostenv, procs
from bench.workloads import WorkloadResult

FLOOR_STEPS: tuple[str, ...] = (
    "pause holder spawn",
    "CNI ADD",
    "sandbox start (holder+CNI ADD)",
    "runc create",
    "runc start",
    "runc create+start",
    "runc kill+wait",
    "runc delete",
    "runc kill+wait+delete",
    "CNI DEL",
    "pause holder stop",
    "sandbox stop (CNI DEL+holder stop)",
    "pod total",
)

# CRI step -> the floor step that does the same work without a daemon. Only steps whose
# work is the same everywhere: containerd, e.g., runs `runc create` in StartContainer (not
# CreateContainer) and `runc delete` in StopContainer, so the pairs are compared.
FLOOR_FOR_CRI_STEP: dict[str, str] = {
    "RunPodSandbox": "sandbox start (holder+CNI ADD)",
    "CreateContainer+StartContainer": "runc create+start",
    "StopContainer+RemoveContainer": "runc kill+wait+delete",
    "StopPodSandbox": "sandbox stop (CNI DEL+holder stop)",
    "pod total": "pod total",
}

CGROUP_PARENT = "tether-bench-floor"
PR_SET_CHILD_SUBREAPER = 36


@dataclass
class FloorConfig:
    rounds: int = 20
    runc: str = ""
    catatonit: str = ""
    unshare: str = ""
    busybox: str = "/bin/busybox"
    rootfs: str = ""  # an unpacked rootfs to use instead of the busybox copy
    cni_conf: str = ""  # a .conflist (or single-plugin .conf); "" skips the CNI steps
    cni_bin: str = "/usr/lib/cni"
    workdir: str = ""
    allow_host_netns: bool = False

    def resolve(self) -> None:
        self.runc = self.runc or shutil.which("runc") or "/usr/sbin/runc"
        self.catatonit = self.catatonit or shutil.which("catatonit") or "/usr/bin/catatonit"
        self.unshare = self.unshare or shutil.which("unshare") or "/usr/bin/unshare"


class FloorError(RuntimeError):
    pass


# ---------------------------------------------------------------- CNI


def load_conflist(path: str) -> dict[str, Any]:
    data = json.loads(Path(path).read_text())
    if "plugins" not in data:  # a single-plugin .conf
        data = {"cniVersion": data.get("cniVersion", "0.4.0"), "name": data["name"],
                "plugins": [data]}
    return data


def cni_plugin_conf(
    conflist: dict[str, Any], plugin: dict[str, Any], prev: dict[str, Any] | None
) -> dict[str, Any]:
    conf = dict(plugin)
    conf["name"] = conflist["name"]
    conf["cniVersion"] = conflist.get("cniVersion", "1.0.0")
    if prev is not None:
        conf["prevResult"] = prev
    return conf


class CniChain:
    def __init__(self, conf_path: str, bin_dir: str) -> None:
        self.conflist = load_conflist(conf_path)
        self.bin_dir = bin_dir

    def _exec(self, command: str, plugin: dict[str, Any], prev: dict[str, Any] | None,
              container_id: str, netns: str) -> dict[str, Any] | None:
        binary = os.path.join(self.bin_dir, plugin["type"])
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": netns,
            "CNI_IFNAME": "eth0",
            "CNI_PATH": self.bin_dir,
            "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=tether-bench;"
                        f"K8S_POD_NAME=floor-{container_id[:8]};"
                        f"K8S_POD_INFRA_CONTAINER_ID={container_id}",
        }
        stdin = json.dumps(cni_plugin_conf(self.conflist, plugin, prev)).encode()
        res = subprocess.run([binary], input=stdin, env=env, capture_output=True, check=False)
        if res.returncode != 0:
            raise FloorError(f"CNI {command} {plugin['type']}: exit {res.returncode}: "
                             f"{res.stdout.decode(errors='replace')}"
                             f"{res.stderr.decode(errors='replace')}")
        if command == "ADD" and res.stdout.strip():
            out = json.loads(res.stdout)
            return out if isinstance(out, dict) else None
        return None

    def add(self, container_id: str, netns: str) -> dict[str, Any] | None:
        prev: dict[str, Any] | None = None
        for plugin in self.conflist["plugins"]:
            prev = self._exec("ADD", plugin, prev, container_id, netns) or prev
        return prev

    def delete(self, container_id: str, netns: str, prev: dict[str, Any] | None) -> None:
        for plugin in reversed(self.conflist["plugins"]):
            self._exec("DEL", plugin, prev, container_id, netns)


# ---------------------------------------------------------------- bundle


def build_rootfs(dest: Path, busybox: str) -> Path:
    """A minimal rootfs: the static busybox and a ``sleep`` link."""
    for d in ("bin", "proc", "sys", "dev", "etc", "tmp"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, dest / "bin" / "busybox")
    for applet in ("sleep", "sh"):
        link = dest / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    (dest / "etc" / "passwd").write_text("root:x:0:0:root:/:/bin/sh\n")
    return dest


def bundle_spec(runc: str, rootfs: Path, holder_pid: int, cid: str) -> dict[str, Any]:
    """``runc spec`` defaults, adapted to a pod container: sleep, joins the holder."""
    with tempfile.TemporaryDirectory(prefix="tether-bench-spec-") as tmp:
        subprocess.run([runc, "spec", "--bundle", tmp], check=True, capture_output=True)
        spec: dict[str, Any] = json.loads((Path(tmp) / "config.json").read_text())
    spec["root"] = {"path": str(rootfs), "readonly": True}
    proc = spec["process"]
    proc["terminal"] = False
    proc["args"] = ["sleep", "3600"]
    proc["env"] = ["PATH=/bin"]
    spec["hostname"] = ""
    linux = spec["linux"]
    joined = {"network": "net", "ipc": "ipc", "uts": "uts"}
    namespaces = []
    for ns in linux.get("namespaces", []):
        if ns["type"] in joined:
            continue
        namespaces.append(ns)
    for typ, name in joined.items():
        namespaces.append({"type": typ, "path": f"/proc/{holder_pid}/ns/{name}"})
    linux["namespaces"] = namespaces
    linux["cgroupsPath"] = f"/{CGROUP_PARENT}/{cid}"
    spec.pop("hostname", None)
    return spec


# ---------------------------------------------------------------- the floor


def _set_subreaper(on: bool) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1 if on else 0, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _wait_exe(pid: int, exe: str, own_netns: str, timeout: float = 10.0) -> None:
    """Until /proc/<pid>/exe is ``exe`` and the process is in another netns."""
    deadline = time.perf_counter() + timeout
    while True:
        try:
            if (os.readlink(f"/proc/{pid}/exe") == exe
                    and os.readlink(f"/proc/{pid}/ns/net") != own_netns):
                return
        except OSError:
            pass
        if time.perf_counter() > deadline:
            raise FloorError(f"pause holder {pid} did not start within {timeout}s")
        time.sleep(0.0002)


def _wait_pid(pid: int, timeout: float = 10.0) -> None:
    """Reap ``pid`` (our child or adopted as subreaper); else poll until it is gone."""
    try:
        os.waitpid(pid, 0)
        return
    except ChildProcessError:
        pass
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return
        except OSError:
            return
        time.sleep(0.0002)
    raise FloorError(f"pid {pid} did not exit within {timeout}s")


def _run(cmd: list[str]) -> None:
    # stderr to a file, not a pipe: `runc create` hands its stdio to the container, and a
    # pipe would then never reach EOF
    with tempfile.TemporaryFile() as err:
        res = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=err, check=False)
        if res.returncode != 0:
            err.seek(0)
            raise FloorError(f"{' '.join(cmd)}: exit {res.returncode}: "
                             f"{err.read().decode(errors='replace').strip()}")


class Floor:
    def __init__(self, cfg: FloorConfig) -> None:
        cfg.resolve()
        self.cfg = cfg
        self.work = Path(cfg.workdir or tempfile.mkdtemp(prefix="tether-bench-floor-"))
        self.runc_root = self.work / "runc"
        self.cni = CniChain(cfg.cni_conf, cfg.cni_bin) if cfg.cni_conf else None
        self.rootfs = Path(cfg.rootfs) if cfg.rootfs else None

    def check(self) -> str | None:
        """Why the floor cannot run here (None when it can)."""
        if os.geteuid() != 0:
            return "the floor needs root (runc, unshare, CNI)"
        if self.cni is not None and not self.cfg.allow_host_netns \
                and not hostenv.in_private_netns():
            return ("refusing to call CNI plugins in the machine's network namespace: run the "
                    "bench inside a network namespace of its own (scripts/bench.sh does)")
        for b in (self.cfg.runc, self.cfg.catatonit, self.cfg.unshare):
            if not os.access(b, os.X_OK):
                return f"{b} not found"
        return None

    def run(self, tick: Callable[[], None]) -> WorkloadResult:
        res = WorkloadResult()
        problem = self.check()
        if problem:
            res.skipped["*"] = problem
            return res
        if self.cni is None:
            for s in ("CNI ADD", "CNI DEL"):
                res.skipped[s] = "no --cni-conf given"
        if self.rootfs is None:
            self.rootfs = build_rootfs(self.work / "rootfs", self.cfg.busybox)
        self.runc_root.mkdir(parents=True, exist_ok=True)
        subreaper = _set_subreaper(True)
        try:
            for _ in range(self.cfg.rounds):
                try:
                    self._round(res)
                except (FloorError, OSError, subprocess.SubprocessError) as e:
                    res.errors.append(str(e))
                    if len(res.errors) >= 3:
                        break
                tick()
        finally:
            if subreaper:
                _set_subreaper(False)
            hostenv.remove_empty_cgroups(CGROUP_PARENT)
            if not self.cfg.workdir:
                shutil.rmtree(self.work, ignore_errors=True)
        res.rounds = self.cfg.rounds
        return res

    def _round(self, res: WorkloadResult) -> None:
        assert self.rootfs is not None
        cfg = self.cfg
        cid = "floor-" + uuid.uuid4().hex[:16]
        own_netns = os.readlink("/proc/self/ns/net")
        exe = os.path.realpath(cfg.catatonit)
        runc = [cfg.runc, "--root", str(self.runc_root)]
        bundle = self.work / cid
        holder: subprocess.Popen[bytes] | None = None
        created = False
        cni_prev: dict[str, Any] | None = None
        cni_added = False
        pid = 0
        try:
            t0 = time.perf_counter()
            holder = subprocess.Popen(
                [cfg.unshare, "--net", "--ipc", "--uts", "--", cfg.catatonit, "-P"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            _wait_exe(holder.pid, exe, own_netns)
            t_spawn = time.perf_counter() - t0
            res.add("pause holder spawn", t_spawn)
            netns = f"/proc/{holder.pid}/ns/net"
            t_add = 0.0
            if self.cni is not None:
                t0 = time.perf_counter()
                cni_added = True
                cni_prev = self.cni.add(cid, netns)
                t_add = time.perf_counter() - t0
                res.add("CNI ADD", t_add)
            res.add("sandbox start (holder+CNI ADD)", t_spawn + t_add)
            mem = procs.read_memory(holder.pid)
            if mem:
                res.metric("holder_pss_kib", mem.pss_kb)
                res.metric("holder_rss_kib", mem.rss_kb)

            bundle.mkdir(parents=True)
            spec = bundle_spec(cfg.runc, self.rootfs, holder.pid, cid)
            (bundle / "config.json").write_text(json.dumps(spec))
            pidfile = bundle / "pid"
            t0 = time.perf_counter()
            _run([*runc, "create", "--bundle", str(bundle), "--pid-file", str(pidfile), cid])
            t_create = time.perf_counter() - t0
            created = True
            res.add("runc create", t_create)
            pid = int(pidfile.read_text().strip())
            t0 = time.perf_counter()
            _run([*runc, "start", cid])
            t_start = time.perf_counter() - t0
            res.add("runc start", t_start)
            res.add("runc create+start", t_create + t_start)

            t0 = time.perf_counter()
            _run([*runc, "kill", cid, "KILL"])
            _wait_pid(pid)
            t_kill = time.perf_counter() - t0
            res.add("runc kill+wait", t_kill)
            t0 = time.perf_counter()
            _run([*runc, "delete", cid])
            created = False
            t_delete = time.perf_counter() - t0
            res.add("runc delete", t_delete)
            res.add("runc kill+wait+delete", t_kill + t_delete)

            t_del = 0.0
            if self.cni is not None:
                t0 = time.perf_counter()
                self.cni.delete(cid, netns, cni_prev)
                cni_added = False
                t_del = time.perf_counter() - t0
                res.add("CNI DEL", t_del)
            t0 = time.perf_counter()
            holder.send_signal(signal.SIGTERM)
            holder.wait(10)
            t_stop = time.perf_counter() - t0
            holder = None
            res.add("pause holder stop", t_stop)
            res.add("sandbox stop (CNI DEL+holder stop)", t_del + t_stop)
            res.add("pod total", t_spawn + t_add + t_create + t_start + t_kill + t_delete
                    + t_del + t_stop)
        finally:
            if created:
                subprocess.run([*runc, "delete", "--force", cid], capture_output=True,
                               check=False)
                if pid:
                    with contextlib.suppress(FloorError):
                        _wait_pid(pid, 2)
            if cni_added and self.cni is not None and holder is not None:
                with contextlib.suppress(FloorError):
                    self.cni.delete(cid, f"/proc/{holder.pid}/ns/net", cni_prev)
            if holder is not None:
                holder.kill()
                holder.wait()
            shutil.rmtree(bundle, ignore_errors=True)
