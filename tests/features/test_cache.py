"""The per-process feature caches stay within their bounds and evict the least recently used."""

import numpy as np
import pandas as pd

from features.cache import BoundedCache, frame_bytes


def test_evicts_least_recently_used_beyond_the_entry_bound():
    cache = BoundedCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
    assert cache.stats()["evictions"] == 1


def test_byte_budget_bounds_the_total_size_and_skips_what_can_never_fit():
    frame = pd.DataFrame({"x": np.zeros(1000)})  # 8 kB of values + index
    size = frame_bytes(frame)
    cache = BoundedCache(100, max_bytes=int(size * 2.5), sizeof=frame_bytes)
    for key in range(5):
        cache.put(key, frame)
    stats = cache.stats()
    assert stats["entries"] == 2 and stats["bytes"] == 2 * size <= stats["max_bytes"]
    assert cache.get(4) is frame and cache.get(0) is None
    cache.put("huge", pd.DataFrame({"x": np.zeros(10_000)}))
    assert cache.get("huge") is None and cache.stats()["entries"] == 2


def test_get_or_compute_computes_once_per_key():
    cache = BoundedCache(10)
    calls = []
    for _ in range(3):
        assert cache.get_or_compute("k", lambda: calls.append(1) or "v") == "v"
    assert len(calls) == 1
    assert cache.stats()["hits"] == 2
