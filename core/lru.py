"""A small thread-safe LRU cache of loaded things (decoded images, embedders, open search indexes).

Loading them costs seconds and memory, and app sessions share them from several threads: each module
keeps at most a few, the least recently used dropped first. Built on :class:`cachetools.LRUCache`.
"""

from __future__ import annotations

import threading
from typing import Callable, Generic, Hashable, Optional, TypeVar

import cachetools

V = TypeVar("V")


class LockedLRU(Generic[V]):
    """At most ``maxsize`` values by key; reading a value makes it the most recently used."""

    def __init__(self, maxsize: int):
        self._cache: cachetools.LRUCache = cachetools.LRUCache(maxsize=maxsize)
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Optional[V]:
        with self._lock:
            return self._cache.get(key)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._cache

    def put(self, key: Hashable, value: V) -> V:
        with self._lock:
            self._cache[key] = value
        return value

    def get_or_build(self, key: Hashable, build: Callable[[], V]) -> V:
        """The value for ``key``, built (outside the lock: building may take seconds) when missing."""
        found = self.get(key)
        return found if found is not None else self.put(key, build())

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()
