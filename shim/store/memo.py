"""Conversions cached per object for the polled paths (List/Status answered as CRI messages).

Holders replace an object rather than change it (a written record, a new image summary), so
identity tells whether a cached value is still good; ``forget`` drops an id that is gone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


Obj = TypeVar("Obj", bound=_HasId)
T = TypeVar("T")


class IdentityMemo:
    def __init__(self) -> None:
        self._caches: dict[str, dict[str, tuple[Any, Any]]] = {}

    def wrap(self, key: str, fn: Callable[[Obj], T]) -> Callable[[Obj], T]:
        """``fn`` cached per object id until a different object comes with that id; ``fn``
        must not mutate its argument."""
        cache = self._caches.setdefault(key, {})

        def cached(obj: Obj) -> T:
            hit = cache.get(obj.id)
            if hit is not None and hit[0] is obj:
                return hit[1]
            value = fn(obj)
            cache[obj.id] = (obj, value)
            return value

        return cached

    def forget(self, obj_id: str) -> None:
        for cache in self._caches.values():
            cache.pop(obj_id, None)
