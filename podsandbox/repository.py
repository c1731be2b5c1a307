"""What the sandbox manager needs of the store, as Protocols: ``podsandbox/`` may not import
``shim.store``, whose sandbox repository (``Store.sandboxes``, over ``SandboxRecord``)
satisfies them. The daemon hands the repository and the record class in."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, TypeVar

from podsandbox.types import SandboxDetails, State


class SandboxRecord(Protocol):
    """The fields of a pod's record the manager reads and writes; ``details`` is the manager's
    own, which the store keeps whole (``SandboxDetails.json_fields``) and decodes once, when it
    reads the record (``from_dict``)."""

    id: str
    name: str
    namespace: str
    uid: str
    attempt: int
    state: State
    created_at: int  # ns since the epoch
    runtime_handler: str
    labels: dict[str, str]
    annotations: dict[str, str]
    details: SandboxDetails


Rec = TypeVar("Rec", bound=SandboxRecord)
T = TypeVar("T")
Rec_co = TypeVar("Rec_co", bound=SandboxRecord, covariant=True)


class SandboxRepository(Protocol[Rec]):
    """Reads from memory, hand out copies; writes are committed before they are seen."""

    def get(self, id_: str, /) -> Rec | None: ...

    def list(self) -> Sequence[Rec]: ...

    def scan(self, fn: Callable[[Rec], T | None], /) -> Sequence[T]:
        """``fn`` of each record (read-only, no copy made), the results that are not None."""
        ...

    def ids(self) -> Iterable[str]: ...

    def resolve(self, id_or_prefix: str, /) -> str | None: ...

    def __len__(self) -> int: ...

    async def put(self, rec: Rec, /) -> None: ...

    async def delete(self, rec: Rec, /) -> None: ...


class NewRecord(Protocol[Rec_co]):
    """Makes a record (the record class itself)."""

    def __call__(self, *, id: str, name: str, namespace: str, uid: str, attempt: int,
                 state: State, created_at: int, runtime_handler: str, labels: dict[str, str],
                 annotations: dict[str, str], details: SandboxDetails) -> Rec_co: ...
