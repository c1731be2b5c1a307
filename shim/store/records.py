"""Typed records the store holds. Managers own the meaning of ``state`` and ``details``.

``details`` is a JSON object a manager fills from its own dataclasses (steps done, namespace
pins, monitor pids, ...); the store only keeps it whole with the rest of the record.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

R = TypeVar("R", bound="Record")


@dataclass
class Record:
    TABLE: ClassVar[str] = ""

    id: str

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls: type[R], text: str) -> R:
        data = json.loads(text)
        names = {f.name for f in dataclasses.fields(cls)}
        # Unknown keys come from a newer schema version; keep what this version knows.
        return cls(**{k: v for k, v in data.items() if k in names})

    def copy(self: R) -> R:
        return self.from_json(self.to_json())


@dataclass
class SandboxRecord(Record):
    TABLE: ClassVar[str] = "sandboxes"

    name: str = ""
    namespace: str = ""
    uid: str = ""
    attempt: int = 0
    state: str = "creating"
    created_at: int = 0  # ns since the epoch
    runtime_handler: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class ContainerRecord(Record):
    TABLE: ClassVar[str] = "containers"

    sandbox_id: str = ""
    name: str = ""
    attempt: int = 0
    state: str = "creating"
    created_at: int = 0
    started_at: int = 0
    finished_at: int = 0
    exit_code: int = 0
    image: str = ""
    image_ref: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImageRecord(Record):
    TABLE: ClassVar[str] = "images"

    repo_tags: list[str] = field(default_factory=list)
    repo_digests: list[str] = field(default_factory=list)
    size: int = 0
    created_at: int = 0
    details: dict[str, Any] = field(default_factory=dict)
