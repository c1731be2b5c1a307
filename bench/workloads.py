"""The CRI workloads: basic, lifecycle, sandbox, concurrency, density, image.

Each workload is split into rounds so that two runtimes can be driven alternately
(A B A B ...; see :mod:`bench.compare`). A round returns a :class:`WorkloadResult`;
the rounds of one runtime are merged.

A step the runtime answers UNIMPLEMENTED for is recorded as *unsupported*, the steps
that depend on it as *skipped*; the tool goes on (cleaning up what was created).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import procs
from bench.cri import CriClient, CriError, Unsupported, remove_pod
from bench.imagefill import fill_refs
from bench.templates import BenchConfig, container_config, pod_config
from shim.cri import api_pb2 as pb

Tick = Callable[[], None]

LIFECYCLE_STEPS: tuple[str, ...] = (
    "RunPodSandbox",
    "CreateContainer",
    "StartContainer",
    "CreateContainer+StartContainer",
    "StopContainer",
    "RemoveContainer",
    "StopContainer+RemoveContainer",
    "StopPodSandbox",
    "RemovePodSandbox",
    "pod total",
)
SANDBOX_STEPS: tuple[str, ...] = (
    "RunPodSandbox",
    "StopPodSandbox",
    "RemovePodSandbox",
    "sandbox total",
)
LIST_STEPS: tuple[str, ...] = ("ListPodSandbox", "ListContainers", "ListContainerStats")
MAX_CONSECUTIVE_ERRORS = 3


@dataclass
class Target:
    """One CRI runtime under test."""

    label: str
    endpoint: str
    client: CriClient
    daemon_pid: int | None = None
    version: dict[str, str] = field(default_factory=dict)
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def next_index(self) -> int:
        with self._lock:
            return next(self._seq)


@dataclass
class WorkloadResult:
    samples: dict[str, list[float]] = field(default_factory=dict)  # step -> seconds
    unsupported: dict[str, str] = field(default_factory=dict)  # step -> error
    skipped: dict[str, str] = field(default_factory=dict)  # step -> why
    errors: list[str] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)  # one value per round
    details: list[dict[str, Any]] = field(default_factory=list)  # per-round extra data
    abandon: bool = False  # stop running rounds of this workload on this runtime
    rounds: int = 0

    def add(self, step: str, seconds: float) -> None:
        self.samples.setdefault(step, []).append(seconds)

    def metric(self, name: str, value: float) -> None:
        self.metrics.setdefault(name, []).append(value)

    def unsupported_step(self, step: str, err: CriError, dependents: tuple[str, ...] = ()) -> None:
        self.unsupported.setdefault(step, f"{err.code.name if err.code else 'ERROR'}: "
                                          f"{err.detail}".strip())
        for d in dependents:
            self.skipped.setdefault(d, f"not reached: {step} unsupported")

    def merge(self, other: WorkloadResult) -> None:
        for k, v in other.samples.items():
            self.samples.setdefault(k, []).extend(v)
        for k, e in other.unsupported.items():
            self.unsupported.setdefault(k, e)
        for k, e in other.skipped.items():
            self.skipped.setdefault(k, e)
        self.errors.extend(other.errors)
        for k, m in other.metrics.items():
            self.metrics.setdefault(k, []).extend(m)
        self.details.extend(other.details)
        self.rounds += other.rounds

    def too_many_errors(self) -> bool:
        return len(self.errors) >= MAX_CONSECUTIVE_ERRORS


class Workload:
    """Base class: ``rounds`` rounds of ``units`` progress units each."""

    name = "workload"
    description = ""

    def __init__(self, cfg: BenchConfig) -> None:
        self.cfg = cfg

    def rounds(self) -> int:
        return 1

    def units(self) -> int:
        """Progress units per round."""
        return 1

    def setup(self, t: Target) -> WorkloadResult | None:
        """Per-runtime preparation; a returned result (e.g. unsupported) ends the workload."""
        return None

    def run_round(self, t: Target, i: int, tick: Tick) -> WorkloadResult:
        raise NotImplementedError


# ---------------------------------------------------------------- pod helpers


@dataclass
class Pod:
    index: int
    name: str
    uid: str
    log_dir: Path
    sandbox_config: pb.PodSandboxConfig
    container_config: pb.ContainerConfig
    sandbox_id: str = ""
    container_id: str = ""


class PodFactory:
    def __init__(self, cfg: BenchConfig, t: Target) -> None:
        self.cfg = cfg
        self.t = t

    def make(self) -> Pod:
        idx = self.t.next_index()
        label = "".join(ch if ch.isalnum() else "-" for ch in self.t.label.lower())
        name = f"bench-{self.cfg.run_id}-{label}-{idx}"
        uid = str(uuid.uuid4())
        log_dir = Path(self.cfg.log_root) / f"{name}_{uid}"
        values = {
            "name": name,
            "uid": uid,
            "index": str(idx),
            "run_id": self.cfg.run_id,
            "log_dir": str(log_dir),
            "image": self.cfg.image,
        }
        sb = pod_config(self.cfg.pod_template, values)
        cc = container_config(self.cfg.container_template, values)
        # the kubelet creates the pod's log directory and the container's subdirectory
        log_dir.mkdir(parents=True, exist_ok=True)
        if cc.log_path:
            (log_dir / cc.log_path).parent.mkdir(parents=True, exist_ok=True)
        return Pod(idx, name, uid, log_dir, sb, cc)


def cleanup_pod_dirs(pod: Pod) -> None:
    shutil.rmtree(pod.log_dir, ignore_errors=True)


def start_pod(
    cfg: BenchConfig, t: Target, pod: Pod, res: WorkloadResult, *, record: bool = True,
    with_container: bool = True,
) -> bool:
    """RunPodSandbox + CreateContainer + StartContainer; True when the container runs (or,
    without a container, when the pod runs)."""
    c = t.client
    try:
        resp, dt = c.call(
            "RunPodSandbox",
            pb.RunPodSandboxRequest(config=pod.sandbox_config, runtime_handler=cfg.handler),
        )
        pod.sandbox_id = resp.pod_sandbox_id
        if record:
            res.add("RunPodSandbox", dt)
    except Unsupported as e:
        dependents = LIFECYCLE_STEPS if with_container and cfg.containers else SANDBOX_STEPS
        res.unsupported_step("RunPodSandbox", e, dependents[1:])
        return False
    except CriError as e:
        res.errors.append(str(e))
        return False
    if not (with_container and cfg.containers):
        return True
    try:
        resp, dt_create = c.call(
            "CreateContainer",
            pb.CreateContainerRequest(
                pod_sandbox_id=pod.sandbox_id,
                config=pod.container_config,
                sandbox_config=pod.sandbox_config,
            ),
        )
        pod.container_id = resp.container_id
        if record:
            res.add("CreateContainer", dt_create)
        _, dt_start = c.call(
            "StartContainer", pb.StartContainerRequest(container_id=pod.container_id)
        )
        if record:
            res.add("StartContainer", dt_start)
            res.add("CreateContainer+StartContainer", dt_create + dt_start)
    except Unsupported as e:
        first = "CreateContainer" if not pod.container_id else "StartContainer"
        deps: tuple[str, ...] = (
            "CreateContainer+StartContainer", "StopContainer", "RemoveContainer",
            "StopContainer+RemoveContainer", "pod total",
        )
        if first == "CreateContainer":
            deps = ("StartContainer", *deps)
        res.unsupported_step(first, e, deps)
        return False
    except CriError as e:
        res.errors.append(str(e))
        return False
    return True


def stop_pod(
    cfg: BenchConfig, t: Target, pod: Pod, res: WorkloadResult, *, record: bool = True,
    with_container: bool = True,
) -> float:
    """StopContainer, RemoveContainer, StopPodSandbox, RemovePodSandbox; the sum of the
    recorded times. Anything that fails is cleaned up best-effort."""
    c = t.client
    total = 0.0
    ok = True
    if pod.container_id and with_container:
        ctr_times: list[float] = []
        for step, req in (
            ("StopContainer", pb.StopContainerRequest(
                container_id=pod.container_id, timeout=cfg.stop_timeout)),
            ("RemoveContainer", pb.RemoveContainerRequest(container_id=pod.container_id)),
        ):
            try:
                _, dt = c.call(step, req)
                total += dt
                ctr_times.append(dt)
                if record:
                    res.add(step, dt)
            except Unsupported as e:
                res.unsupported_step(step, e, ("StopContainer+RemoveContainer",))
                ok = False
                break
            except CriError as e:
                res.errors.append(str(e))
                ok = False
                break
        if record and len(ctr_times) == 2:
            res.add("StopContainer+RemoveContainer", sum(ctr_times))
    if pod.sandbox_id:
        for step, sreq in (
            ("StopPodSandbox", pb.StopPodSandboxRequest(pod_sandbox_id=pod.sandbox_id)),
            ("RemovePodSandbox", pb.RemovePodSandboxRequest(pod_sandbox_id=pod.sandbox_id)),
        ):
            try:
                _, dt = c.call(step, sreq)
                total += dt
                if record and ok:
                    res.add(step, dt)
            except Unsupported as e:
                res.unsupported_step(step, e)
                ok = False
                break
            except CriError as e:
                res.errors.append(str(e))
                ok = False
                break
        if not ok:
            remove_pod(c, pod.sandbox_id)
    cleanup_pod_dirs(pod)
    return total


def one_pod(cfg: BenchConfig, t: Target, res: WorkloadResult, *, record: bool = True,
            with_container: bool = True) -> None:
    """The full lifecycle of one pod (without a container: "sandbox total", not "pod total")."""
    pod = PodFactory(cfg, t).make()
    errors, unsupported = len(res.errors), len(res.unsupported)
    t0 = time.perf_counter()
    started = start_pod(cfg, t, pod, res, record=record, with_container=with_container)
    stop_pod(cfg, t, pod, res, record=record)
    clean = len(res.errors) == errors and len(res.unsupported) == unsupported
    if started and record and clean:
        total = "pod total" if with_container and cfg.containers else "sandbox total"
        res.add(total, time.perf_counter() - t0)


def ensure_image(cfg: BenchConfig, t: Target, ref: str) -> WorkloadResult | None:
    """Pull ``ref`` through the CRI ImageService unless present; a result on failure."""
    try:
        t.client.ensure_image(ref)
    except Unsupported as e:
        res = WorkloadResult()
        res.unsupported_step(e.method, e)
        res.skipped["*"] = f"image could not be pulled through the CRI ({e.method} unsupported)"
        res.abandon = True
        return res
    except CriError as e:
        res = WorkloadResult()
        res.errors.append(f"pull {ref}: {e}")
        res.abandon = True
        return res
    return None


# ---------------------------------------------------------------- workloads


class Basic(Workload):
    name = "basic"
    description = "Version / Status / RuntimeConfig / ImageFsInfo latency"
    RPCS: tuple[tuple[str, Callable[[], Any]], ...] = (
        ("Version", lambda: pb.VersionRequest(version="0.1.0")),
        ("Status", lambda: pb.StatusRequest(verbose=False)),
        ("RuntimeConfig", lambda: pb.RuntimeConfigRequest()),
        ("ImageFsInfo", lambda: pb.ImageFsInfoRequest()),
    )

    def units(self) -> int:
        return len(self.RPCS)

    def run_round(self, t: Target, i: int, tick: Tick) -> WorkloadResult:
        res = WorkloadResult()
        for name, make in self.RPCS:
            for _ in range(self.cfg.basic_iterations):
                try:
                    _, dt = t.client.call(name, make())
                    res.add(name, dt)
                except Unsupported as e:
                    res.unsupported_step(name, e)
                    break
                except CriError as e:
                    res.errors.append(str(e))
                    break
            tick()
        return res


class Lifecycle(Workload):
    name = "lifecycle"
    description = "pods one after another: run, create+start a busybox sleep, stop, remove"

    def rounds(self) -> int:
        return self.cfg.pods

    def setup(self, t: Target) -> WorkloadResult | None:
        bad = ensure_image(self.cfg, t, self.cfg.image) if self.cfg.containers else None
        if bad is not None:
            return bad
        warm = WorkloadResult()
        for _ in range(self.cfg.warmup):
            one_pod(self.cfg, t, warm, record=False)
        if warm.unsupported and "RunPodSandbox" in warm.unsupported:
            warm.abandon = True
            return warm
        return None

    def run_round(self, t: Target, i: int, tick: Tick) -> WorkloadResult:
        res = WorkloadResult()
        one_pod(self.cfg, t, res)
        if "RunPodSandbox" in res.unsupported:
            res.abandon = True
        tick()
        return res


class Sandbox(Workload):
    """Pod sandboxes alone: comparable while a runtime has no containers yet, and the
    sandbox steps without a container's work mixed into StopPodSandbox."""

    name = "sandbox"
    description = "pods without containers one after another: run, stop, remove"

    def rounds(self) -> int:
        return self.cfg.pods

    def setup(self, t: Target) -> WorkloadResult | None:
        warm = WorkloadResult()
        for _ in range(self.cfg.warmup):
            one_pod(self.cfg, t, warm, record=False, with_container=False)
        if "RunPodSandbox" in warm.unsupported:
            warm.abandon = True
            return warm
        return None

    def run_round(self, t: Target, i: int, tick: Tick) -> WorkloadResult:
        res = WorkloadResult()
        one_pod(self.cfg, t, res, with_container=False)
        if "RunPodSandbox" in res.unsupported:
            res.abandon = True
        tick()
        return res


class Concurrency(Workload):
    name = "concurrency"
    description = "the lifecycle with K workers in parallel; pods/s"

    def rounds(self) -> int:
        return self.cfg.concurrency_rounds

    def units(self) -> int:
        return self.cfg.concurrency_pods

    def setup(self, t: Target) -> WorkloadResult | None:
        return ensure_image(self.cfg, t, self.cfg.image) if self.cfg.containers else None

    def run_round(self, t: Target, i: int, tick: Tick) -> WorkloadResult:
        total = self.cfg.concurrency_pods
        counter = itertools.count()
        lock = threading.Lock()
        results: list[WorkloadResult] = []

        def worker() -> None:
            mine = WorkloadResult()
            results.append(mine)
            while True:
                with lock:
                    n = next(counter)
                if n >= total or "RunPodSandbox" in mine.unsupported:
                    return
                one_pod(self.cfg, t, mine)
                tick()

        t0 = time.perf_counter()
        threads = [threading.Thread(target=worker, daemon=True)
                   for _ in range(max(1, self.cfg.workers))]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - t0
        res = WorkloadResult()
        for r in results:
            res.merge(r)
        res.rounds = 1
        done = len(res.samples.get("pod total", []))
        if done:
            res.metric("pods_per_s", done / wall)
            res.metric("wall_s", wall)
        if "RunPodSandbox" in res.unsupported:
            res.abandon = True
        return res


class Density(Workload):
    name = "density"
    description = "M pods held running: per-pod memory overhead, List* latency"

    def rounds(self) -> int:
        return self.cfg.density_rounds

    def units(self) -> int:
        return self.cfg.density * 2 + 1

    def setup(self, t: Target) -> WorkloadResult | None:
        return ensure_image(self.cfg, t, self.cfg.image) if self.cfg.containers else None

    def run_round(self, t: Target, i: int, tick: Tick) -> WorkloadResult:
        cfg = self.cfg
        res = WorkloadResult()
        factory = PodFactory(cfg, t)
        pods: list[Pod] = []
        self_pid = os.getpid()
        before = procs.snapshot()
        daemon_before = procs.read_memory(t.daemon_pid) if t.daemon_pid else None
        try:
            for _ in range(cfg.density):
                pod = factory.make()
                pods.append(pod)
                ok = start_pod(cfg, t, pod, res)
                tick()
                if not ok and ("RunPodSandbox" in res.unsupported or res.too_many_errors()):
                    break
            running = [p for p in pods
                       if p.sandbox_id and (p.container_id or not cfg.containers)]
            if running:
                time.sleep(cfg.settle_seconds)
                self._memory(t, running, before, daemon_before, self_pid, res)
                self._lists(t, res)
            elif "RunPodSandbox" in res.unsupported:
                res.abandon = True
            tick()
        finally:
            for pod in pods:
                stop_pod(cfg, t, pod, res)
                tick()
        return res

    def _memory(
        self,
        t: Target,
        running: list[Pod],
        before: procs.Snapshot,
        daemon_before: procs.Memory | None,
        self_pid: int,
        res: WorkloadResult,
    ) -> None:
        after = procs.snapshot()
        workload_pids: list[int] = []
        pid_source = {"container_status": 0, "cgroup_only": 0}
        pod_netns: set[str] = set()
        for pod in running:
            pid = None
            if pod.container_id:
                with contextlib.suppress(CriError):
                    pid = t.client.container_pid(pod.container_id)
            if pid is None:
                try:
                    sb_pid = t.client.sandbox_pid(pod.sandbox_id)
                except CriError:
                    sb_pid = None
                if sb_pid:
                    pod_netns.add(procs.netns_of(sb_pid))
                pid_source["cgroup_only"] += 1
            else:
                workload_pids.append(pid)
                pod_netns.add(procs.netns_of(pid))
                pid_source["container_status"] += 1
        # pods whose workload pid was unknown: find their processes by cgroup, and their
        # network namespace from those processes
        markers = [p.container_id for p in running if p.container_id]
        for info in after.procs.values():
            if any(m in info.cgroup for m in markers):
                pod_netns.add(info.netns)
        daemon_ns = procs.netns_of(t.daemon_pid) if t.daemon_pid else procs.netns_of(self_pid)
        scope = {daemon_ns, *pod_netns} - {""}
        acc = procs.account(
            before, after,
            workload_pids=workload_pids,
            workload_cgroup_markers=markers,
            scope_netns=scope,
            exclude_pids=[self_pid],
        )
        daemon_after = procs.read_memory(t.daemon_pid) if t.daemon_pid else None
        m = len(running)
        growth_kb = 0
        if daemon_before and daemon_after:
            growth_kb = daemon_after.pss_kb - daemon_before.pss_kb
        per_pod_kb = (acc.pss_kb + growth_kb) / m
        res.metric("pods_running", m)
        res.metric("per_pod_overhead_kib", per_pod_kb)
        res.metric("per_pod_processes_kib", acc.pss_kb / m)
        res.metric("per_pod_daemon_growth_kib", growth_kb / m)
        if daemon_after:
            res.metric("daemon_pss_kib", daemon_after.pss_kb)
            res.metric("daemon_rss_kib", daemon_after.rss_kb)
        if daemon_before:
            res.metric("daemon_pss_before_kib", daemon_before.pss_kb)
            res.metric("daemon_rss_before_kib", daemon_before.rss_kb)
        res.details.append({
            "pods_running": m,
            "daemon_pid": t.daemon_pid,
            "added_processes": acc.by_name(),
            "added_processes_count": len(acc.counted),
            "workload_processes": len(acc.workload),
            "workload_pss_kib": sum(p.pss_kb for p in acc.workload),
            "new_processes_out_of_scope": acc.out_of_scope,
            "workload_pid_source": pid_source,
            "scope_netns": sorted(scope),
        })

    def _lists(self, t: Target, res: WorkloadResult) -> None:
        reqs: tuple[tuple[str, Callable[[], Any]], ...] = (
            ("ListPodSandbox", lambda: pb.ListPodSandboxRequest()),
            ("ListContainers", lambda: pb.ListContainersRequest()),
            ("ListContainerStats", lambda: pb.ListContainerStatsRequest()),
        )
        # interleaved, as the kubelet's relist does one after the other
        live = dict(reqs)
        for _ in range(self.cfg.list_iterations):
            for name, make in list(live.items()):
                try:
                    _, dt = t.client.call(name, make())
                    res.add(name, dt)
                except Unsupported as e:
                    res.unsupported_step(name, e)
                    live.pop(name)
                except CriError as e:
                    res.errors.append(str(e))
                    live.pop(name)


class Image(Workload):
    name = "image"
    description = "pull + unpack (image removed before each round), ListImages, ImageStatus"

    def __init__(self, cfg: BenchConfig) -> None:
        super().__init__(cfg)
        self._fill_by_target: dict[str, WorkloadResult] = {}

    def rounds(self) -> int:
        return self.cfg.image_rounds

    def setup(self, t: Target) -> WorkloadResult | None:
        """Pull the fill images (``--image-fill``) so that ListImages / ImageStatus run
        against a store of that many images; their pull times go into the first round."""
        fill = WorkloadResult()
        if not (self.cfg.image_fill and self.cfg.image_fill_prefix):
            return None
        t0 = time.perf_counter()
        pulled = 0
        for ref in fill_refs(self.cfg.image_fill_prefix, self.cfg.image_fill):
            try:
                if t.client.image_present(ref):
                    continue
                _, dt = t.client.call("PullImage", pb.PullImageRequest(image=pb.ImageSpec(
                    image=ref)))
                fill.add("PullImage (fill image)", dt)
                pulled += 1
            except Unsupported as e:
                res = WorkloadResult()
                res.unsupported_step(e.method, e)
                res.abandon = True
                return res
            except CriError as e:
                res = WorkloadResult()
                res.errors.append(f"fill pull {ref}: {e}")
                res.abandon = True
                return res
        fill.metric("fill_images_pulled", pulled)
        fill.metric("fill_setup_s", time.perf_counter() - t0)
        self._fill_by_target[t.label] = fill  # merged into this target's first round
        return None

    def run_round(self, t: Target, i: int, tick: Tick) -> WorkloadResult:
        res = WorkloadResult()
        fill = self._fill_by_target.pop(t.label, None)
        if fill is not None:
            res.merge(fill)
        ref = self.cfg.pull_ref
        c = t.client
        spec = pb.ImageSpec(image=ref)
        try:
            c.call("RemoveImage", pb.RemoveImageRequest(image=spec))
        except Unsupported as e:
            res.unsupported_step("RemoveImage", e)
        except CriError as e:
            if e.code is None or e.code.name != "NOT_FOUND":
                res.errors.append(str(e))
        try:
            if c.image_present(ref):
                res.errors.append(f"{ref} still present after RemoveImage: pull not measured")
            else:
                _, dt = c.call("PullImage", pb.PullImageRequest(image=spec))
                res.add("PullImage", dt)
                st, _ = c.call("ImageStatus", pb.ImageStatusRequest(image=spec))
                size = int(st.image.size)
                res.metric("image_size_bytes", size)
                if dt > 0 and size:
                    res.metric("pull_mb_per_s", size / dt / 1e6)
        except Unsupported as e:
            res.unsupported_step(e.method, e, ("PullImage",) if e.method != "PullImage" else ())
            res.abandon = True
        except CriError as e:
            res.errors.append(str(e))
        for name, make in (
            ("ListImages", lambda: pb.ListImagesRequest()),
            ("ImageStatus", lambda: pb.ImageStatusRequest(image=spec)),
        ):
            for _ in range(self.cfg.list_iterations):
                try:
                    resp, dt = c.call(name, make())
                    res.add(name, dt)
                    if name == "ListImages":
                        res.metrics["images_listed"] = [float(len(resp.images))]
                except Unsupported as e:
                    res.unsupported_step(name, e)
                    break
                except CriError as e:
                    res.errors.append(str(e))
                    break
        tick()
        return res


# the CRI workloads in the order they run: bench.catalog.WORKLOADS (streaming is its own module)
CRI_WORKLOADS: tuple[type[Workload], ...] = (Basic, Lifecycle, Sandbox, Concurrency, Density,
                                             Image)
