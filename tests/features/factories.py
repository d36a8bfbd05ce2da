"""Synthetic bars for feature tests: seeded geometric random walks, optionally with the
degenerate stretches real data has (flat windows on a halted or illiquid instrument)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.engine import IncrementalEngine


def random_walk_bars(
    n: int,
    seed: int,
    *,
    freq: str = "1h",
    start: str = "2024-01-01 00:00",
    scale: float = 100.0,
    vol: float = 0.01,
    flat_runs: bool = False,
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = scale * np.exp(np.cumsum(vol * rng.standard_normal(n)))
    open_ = np.r_[close[:1], close[:-1]] * np.exp(0.1 * vol * rng.standard_normal(n))
    spread = np.abs(rng.standard_normal(n)) * 0.5 * vol * close
    high = np.maximum(open_, close) + spread
    low = np.minimum(open_, close) - spread
    volume = rng.integers(0, 1000, n).astype(float)
    if flat_runs:  # 30-bar stretches where nothing trades: o = h = l = c, no volume
        for s in rng.integers(0, max(1, n - 40), max(1, n // 300)):
            open_[s : s + 30] = high[s : s + 30] = low[s : s + 30] = close[s : s + 30] = close[s]
            volume[s : s + 30] = 0.0
    index = pd.date_range(start, periods=n, freq=freq, tz="UTC")
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index)


def stream_rows(engine: IncrementalEngine, bars: pd.DataFrame) -> list:
    seconds = bars.index.as_unit("s").asi8.tolist()
    cols = [bars[c].tolist() for c in ("open", "high", "low", "close", "volume")]
    return [engine.update(t, *bar) for t, *bar in zip(seconds, *cols, strict=True)]
