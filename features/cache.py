"""Per-process caches of feature computation, bounded in size (``settings.FEATURES_CACHE``).

Keys are content addresses, so an entry can never be stale or cross tenants: a parsed spec is keyed
by its spec hash; computed features of stored bars by (schema, instrument, its ``bars_version``,
timeframe, spec hash), and ``bars_version`` changes with every import or delete of its bars. The one
exception is ``refs`` (which version ``name`` means), kept for ``REF_TTL`` seconds at most.
Least recently used entries go first once the byte budget is spent.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import pandas as pd
from django.conf import settings


class BoundedCache:
    """A thread-safe LRU bounded by entry count and, given ``sizeof``, by the total size of its values."""

    def __init__(self, max_entries: int, *, max_bytes: int | None = None, sizeof: Callable[[Any], int] | None = None):
        self.max_entries = max_entries
        self.max_bytes = max_bytes if max_bytes is not None else sys.maxsize
        self._sizeof = sizeof or (lambda value: 0)
        self._data: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = self.evictions = 0

    def get(self, key: Hashable, default=None):
        with self._lock:
            item = self._data.get(key)
            if item is None:
                self.misses += 1
                return default
            self._data.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: Hashable, value: Any) -> None:
        size = self._sizeof(value)
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if size > self.max_bytes:  # would evict everything else and still not fit
                return
            self._data[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes or len(self._data) > self.max_entries:
                _, (_, freed) = self._data.popitem(last=False)
                self._bytes -= freed
                self.evictions += 1

    def get_or_compute(self, key: Hashable, compute: Callable[[], Any]):
        value = self.get(key)
        if value is None:
            value = compute()  # outside the lock: two threads may both compute once, never block
            self.put(key, value)
        return value

    def discard(self, predicate: Callable[[Hashable], bool]) -> None:
        """Drop every entry whose key matches."""
        with self._lock:
            for key in [k for k in self._data if predicate(k)]:
                self._bytes -= self._data.pop(key)[1]

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._bytes = 0

    def stats(self) -> dict:
        with self._lock:
            return {
                "entries": len(self._data),
                "bytes": self._bytes,
                "max_bytes": self.max_bytes,
                "hits": self.hits,
                "misses": self.misses,
                "evictions": self.evictions,
            }


def frame_bytes(frame: pd.DataFrame) -> int:
    return int(frame.memory_usage(index=True, deep=False).sum())


_config = settings.FEATURES_CACHE
specs = BoundedCache(_config["SPEC_ENTRIES"])
refs = BoundedCache(_config["SPEC_ENTRIES"])  # (schema, ref) -> (expires at, FeatureSet)
REF_TTL = _config["REF_TTL"]
stored_features = BoundedCache(1_000, max_bytes=_config["FRAME_BYTES"], sizeof=frame_bytes)
# the last row of such a frame as {column: float}: what a live decision reads, same key
latest_features = BoundedCache(1_000)
