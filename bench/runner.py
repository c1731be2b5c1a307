"""Runs the selected workloads on one or two runtimes (interleaved) and the floor."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench import hostenv, procs
from bench.catalog import WORKLOADS
from bench.compare import interleave
from bench.cri import CriClient, CriError, socket_path
from bench.floor import Floor, FloorConfig
from bench.progress import Progress
from bench.templates import BENCH_LABEL, BenchConfig
from bench.workloads import Target, Workload, WorkloadResult

CGROUP_PARENT = "tether-bench"
ERROR_ROUNDS_BEFORE_GIVING_UP = 3


class ConnectError(RuntimeError):
    pass


def connect(endpoint: str, label: str | None, timeout: float) -> Target:
    client = CriClient(endpoint, timeout)
    try:
        client.wait_ready(10.0)
    except Exception as e:
        client.close()
        raise ConnectError(f"{endpoint}: not reachable ({type(e).__name__})") from None
    version: dict[str, str] = {}
    try:
        v = client.version()
        version = {
            "version": v.version,
            "runtime_name": v.runtime_name,
            "runtime_version": v.runtime_version,
            "runtime_api_version": v.runtime_api_version,
        }
    except CriError as e:
        version = {"error": str(e)}
    name = label or version.get("runtime_name") or socket_path(endpoint).rsplit("/", 1)[-1]
    pid = procs.pid_listening_on(socket_path(endpoint))
    return Target(label=name, endpoint=client.endpoint, client=client, daemon_pid=pid,
                  version=version)


def unique_labels(targets: Sequence[Target]) -> None:
    seen: dict[str, int] = {}
    for t in targets:
        seen[t.label] = seen.get(t.label, 0) + 1
    if any(n > 1 for n in seen.values()):
        for i, t in enumerate(targets):
            t.label = f"{t.label}-{'AB'[i] if i < 2 else i}"


@dataclass
class Runner:
    cfg: BenchConfig
    targets: list[Target]
    progress: Progress
    results: dict[str, dict[str, WorkloadResult]] = field(default_factory=dict)

    @staticmethod
    def units(cfg: BenchConfig, names: Sequence[str], n_targets: int,
              floor_rounds: int) -> int:
        total = 0
        for name in names:
            if name == "floor":
                total += floor_rounds
            elif name in WORKLOADS:
                w = WORKLOADS[name](cfg)
                total += w.rounds() * w.units() * n_targets
        return total

    def run_workload(self, name: str) -> None:
        wl: Workload = WORKLOADS[name](self.cfg)
        per = {t.label: WorkloadResult() for t in self.targets}
        active: list[Target] = []
        for t in self.targets:
            self.progress.set_note(f"{name}: preparing {t.label}")
            bad = wl.setup(t)
            if bad is not None:
                per[t.label].merge(bad)
                if bad.abandon:
                    self.progress.advance(wl.rounds() * wl.units())
                    continue
            active.append(t)
        error_rounds = {t.label: 0 for t in self.targets}
        gave_up: set[str] = set()
        for i, t in interleave(wl.rounds(), active):
            if t.label in gave_up:
                self.progress.advance(wl.units())
                continue
            self.progress.set_note(f"{name}: {t.label} round {i + 1}/{wl.rounds()}")
            before = self.progress.done
            r = wl.run_round(t, i, lambda: self.progress.advance())
            # keep the bar honest when a round ended early
            self.progress.advance(max(0, before + wl.units() - self.progress.done))
            r.rounds = 1
            per[t.label].merge(r)
            error_rounds[t.label] = error_rounds[t.label] + 1 if r.errors else 0
            if r.abandon or error_rounds[t.label] >= ERROR_ROUNDS_BEFORE_GIVING_UP:
                if not r.abandon:
                    per[t.label].errors.append(
                        f"gave up after {ERROR_ROUNDS_BEFORE_GIVING_UP} rounds with errors")
                gave_up.add(t.label)
        for t in self.targets:
            self.results.setdefault(t.label, {})[name] = per[t.label]

    def cleanup(self) -> None:
        for t in self.targets:
            with contextlib.suppress(CriError):
                t.client.remove_pods(BENCH_LABEL, self.cfg.run_id)
        shutil.rmtree(self.cfg.log_root, ignore_errors=True)
        with contextlib.suppress(OSError):  # the parent, when no other run uses it
            os.rmdir(os.path.dirname(self.cfg.log_root.rstrip("/")))
        hostenv.remove_empty_cgroups(CGROUP_PARENT)


def run_floor(fcfg: FloorConfig, progress: Progress) -> WorkloadResult:
    progress.set_note("floor")
    return Floor(fcfg).run(lambda: progress.advance())
