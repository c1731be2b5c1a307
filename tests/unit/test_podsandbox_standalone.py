"""podsandbox/ stands alone: it imports nothing of shim/ (at run time either), and its manager
works over any repository that fits ``podsandbox.repository`` with the logger and span
factory it is handed."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from cni.errdefs import NotFound
from cni.manager import CNIManager
from podsandbox.manager import SandboxManager
from podsandbox.types import SandboxConfig, SandboxDetails, State

ROOT = Path(__file__).resolve().parents[2]


def test_importing_podsandbox_loads_nothing_of_shim() -> None:
    code = ("import sys\n"
            "import podsandbox.manager, podsandbox.repository, podsandbox.observe\n"
            "loaded = sorted(m for m in sys.modules if m == 'shim' or m.startswith('shim.'))\n"
            "assert not loaded, loaded\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


@dataclass
class Rec:
    id: str
    name: str = ""
    namespace: str = ""
    uid: str = ""
    attempt: int = 0
    state: State = State.CREATING
    created_at: int = 0
    runtime_handler: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    details: SandboxDetails = field(default_factory=SandboxDetails)


T = TypeVar("T")


class DictRepository:
    def __init__(self, *recs: Rec) -> None:
        self.data = {r.id: r for r in recs}
        self.puts: list[tuple[str, str]] = []

    def get(self, id_: str) -> Rec | None:
        return self.data.get(id_)

    def list(self) -> list[Rec]:
        return list(self.data.values())

    def scan(self, fn: Callable[[Rec], T | None]) -> list[T]:
        return [v for r in self.data.values() if (v := fn(r)) is not None]

    def ids(self) -> list[str]:
        return list(self.data)

    def resolve(self, id_or_prefix: str) -> str | None:
        found = [i for i in self.data if i.startswith(id_or_prefix)] if id_or_prefix else []
        return found[0] if len(found) == 1 else None

    def __len__(self) -> int:
        return len(self.data)

    async def put(self, rec: Rec) -> None:
        self.puts.append((rec.id, rec.state.value))
        self.data[rec.id] = rec

    async def delete(self, rec: Rec) -> None:
        self.data.pop(rec.id, None)


class Containers:
    """The pod's containers as the manager is handed them; records the calls beside the
    repository's writes, to show the order."""

    def __init__(self, repo: DictRepository) -> None:
        self.repo = repo

    async def stop_pod_containers(self, sandbox_id: str) -> None:
        self.repo.puts.append((sandbox_id, "containers stopped"))

    async def remove_pod_containers(self, sandbox_id: str) -> None:
        self.repo.puts.append((sandbox_id, "containers removed"))


class Recorder:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def info(self, event: str, **kw: Any) -> None:
        self.lines.append(("info", event, kw))

    def warning(self, event: str, **kw: Any) -> None:
        self.lines.append(("warning", event, kw))

    def error(self, event: str, **kw: Any) -> None:
        self.lines.append(("error", event, kw))


def _manager(tmp_path: Path, repo: DictRepository, logger: Recorder) -> SandboxManager[Rec]:
    cfg = SandboxConfig(run_dir=str(tmp_path / "run"), handlers=frozenset({"runc"}),
                        cgroup_driver="cgroupfs", default_cgroup_parent="",
                        pause_holder="/nonexistent/catatonit")
    cni = CNIManager(str(tmp_path / "net.d"), [], str(tmp_path / "cni-cache"))
    return SandboxManager(cfg, repo, Rec, cni, logger=logger)


def test_lookups_over_a_repository_of_its_own(tmp_path: Path) -> None:
    repo = DictRepository(Rec(id="abc123", state=State.READY))
    m = _manager(tmp_path, repo, Recorder())
    assert m.get("abc").id == "abc123"
    with pytest.raises(NotFound, match="'zzz'"):
        m.get("zzz")
    asyncio.run(m.stop("zzz", Containers(repo)))  # unknown: succeeds, as the CRI asks
    asyncio.run(m.remove("zzz", Containers(repo)))
    assert repo.puts == []


def test_stop_writes_the_intent_then_stops_the_containers(tmp_path: Path) -> None:
    # no pause-holder, no cgroup, no network of its own: nothing on the host to undo
    repo = DictRepository(Rec(id="p1", state=State.READY))
    m = _manager(tmp_path, repo, Recorder())
    asyncio.run(m.stop("p1", Containers(repo)))
    assert repo.puts == [("p1", State.STOPPING.value), ("p1", "containers stopped"),
                         ("p1", State.NOTREADY.value)]
    asyncio.run(m.stop("p1", Containers(repo)))  # idempotent: nothing more
    assert len(repo.puts) == 3


def test_reconcile_finishes_a_stop_the_daemon_died_in(tmp_path: Path) -> None:
    repo = DictRepository(Rec(id="p1", state=State.STOPPING))
    asyncio.run(_manager(tmp_path, repo, Recorder()).reconcile(Containers(repo)))
    assert repo.puts == [("p1", State.STOPPING.value), ("p1", "containers stopped"),
                         ("p1", State.NOTREADY.value)]


def test_reconcile_marks_a_pod_without_its_holder_notready_and_logs(tmp_path: Path) -> None:
    repo = DictRepository(Rec(id="p1", state=State.READY, details=SandboxDetails(cgroup="x")))
    logger = Recorder()
    asyncio.run(_manager(tmp_path, repo, logger).reconcile(Containers(repo)))
    assert repo.puts == [("p1", State.NOTREADY.value)]
    done = [kw for level, event, kw in logger.lines if event == "sandboxes reconciled"]
    assert done == [{"rolled_back": 0, "stopped": 0, "removed": 0, "notready": 1,
                     "orphans": 0, "sandboxes": 1}]
