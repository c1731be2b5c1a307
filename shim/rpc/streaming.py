"""Server-streaming List calls send the same items as their List call, in chunks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")
CHUNK = 100  # keeps each message small however many objects there are


def chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    """At least one chunk, so a stream of nothing still sends one (empty) message."""
    for i in range(0, max(len(items), 1), CHUNK):
        yield items[i : i + CHUNK]
