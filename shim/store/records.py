"""Typed records the store holds. Managers own the meaning of ``state`` and ``details``.

A pod's and a container's ``details`` are their manager's dataclass (steps done, namespace
pins, monitor pids, ...: ``podsandbox.types.SandboxDetails``, ``shim.containers.types
.ContainerDetails``) and ``state`` its enum: the store keeps them whole as JSON and decodes
them once, when it reads a record, so nobody else decodes them.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from podsandbox.types import SandboxDetails, State
from shim.containers.types import ContainerDetails, CState

R = TypeVar("R", bound="Record")


@dataclass
class Record:
    TABLE: ClassVar[str] = ""

    id: str

    def to_json(self) -> str:
        return json.dumps(self, separators=(",", ":"), sort_keys=True, default=_fields)

    @classmethod
    def _decode(cls, data: dict[str, Any]) -> dict[str, Any]:
        """The typed fields of a record's JSON (``data``: the fields this version knows)."""
        return data

    @classmethod
    def from_json(cls: type[R], text: str) -> R:
        data = json.loads(text)
        names = {f.name for f in dataclasses.fields(cls)}
        # Unknown keys come from a newer schema version; keep what this version knows.
        return cls(**cls._decode({k: v for k, v in data.items() if k in names}))

    def copy(self: R) -> R:
        return self.from_json(self.to_json())


@dataclass
class SandboxRecord(Record):
    TABLE: ClassVar[str] = "sandboxes"

    name: str = ""
    namespace: str = ""
    uid: str = ""
    attempt: int = 0
    state: State = State.CREATING
    created_at: int = 0  # ns since the epoch
    runtime_handler: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    details: SandboxDetails = field(default_factory=SandboxDetails)

    @classmethod
    def _decode(cls, data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "state": State(data.get("state", State.CREATING)),
                "details": SandboxDetails.from_dict(data.get("details") or {})}


@dataclass
class ContainerRecord(Record):
    TABLE: ClassVar[str] = "containers"

    sandbox_id: str = ""
    name: str = ""
    attempt: int = 0
    state: CState = CState.CREATING
    created_at: int = 0
    started_at: int = 0
    finished_at: int = 0
    exit_code: int = 0
    image: str = ""
    image_ref: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    details: ContainerDetails = field(default_factory=ContainerDetails)

    @classmethod
    def _decode(cls, data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "state": CState(data.get("state", CState.CREATING)),
                "details": ContainerDetails.from_dict(data.get("details") or {})}


@dataclass
class ImageRecord(Record):
    TABLE: ClassVar[str] = "images"

    repo_tags: list[str] = field(default_factory=list)
    repo_digests: list[str] = field(default_factory=list)
    size: int = 0
    created_at: int = 0
    details: dict[str, Any] = field(default_factory=dict)


def _fields(obj: Any) -> dict[str, Any]:
    """A dataclass's fields as json.dumps encodes them (its ``json_fields`` when its stored
    shape differs), for json.dumps to walk on: nothing copied, unlike ``dataclasses.asdict``
    (which made a status call's copy of a record several times slower)."""
    own = getattr(obj, "json_fields", None)
    return own() if own is not None else vars(obj)
