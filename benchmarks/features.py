"""Feature engine figures: batch over 1M bars and per-bar incremental latency (no database).

Run alone with ``python -m benchmarks.features``; ``make bench`` calls :func:`bench_features`.
"""

from __future__ import annotations

import gc
import os
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

BATCH_BARS = 1_000_000
WARM_BARS = 2_000
TIMED_UPDATES = 20_000


def _bars(n: int, seed: int = 7):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(0.0005 * rng.standard_normal(n)))
    open_ = np.r_[close[0], close[:-1]]
    spread = np.abs(rng.standard_normal(n)) * 0.0005 * close
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) + spread,
            "low": np.minimum(open_, close) - spread,
            "close": close,
            "volume": rng.integers(1, 1000, n).astype(float),
        },
        index=pd.date_range("2020-01-01", periods=n, freq="1min", tz="UTC"),
    )


def _pct(sorted_values, q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def _incremental(spec, bars) -> tuple[float, float, float]:
    from features.engine import IncrementalEngine

    engine = IncrementalEngine(spec, "1m")
    rows = list(zip(bars.index.as_unit("s").asi8.tolist(), *(bars[c].tolist() for c in bars.columns), strict=True))
    update = engine.update
    for row in rows[:WARM_BARS]:
        update(*row)
    clock = time.perf_counter_ns
    lat = []
    for row in rows[WARM_BARS : WARM_BARS + TIMED_UPDATES]:
        t = clock()
        update(*row)
        lat.append(clock() - t)
    lat.sort()
    return _pct(lat, 0.5) / 1000, _pct(lat, 0.99) / 1000, lat[-1] / 1000


def run() -> list[str]:
    import django

    django.setup()
    from features.engine import compute_batch
    from features.spec import DEFAULT_SPEC, FeatureSpec

    lines = []
    bars = _bars(BATCH_BARS)
    compute_batch(bars.iloc[:1000], DEFAULT_SPEC, "1m")  # imports, first calls
    times = []
    for _ in range(3):
        gc.collect()
        t = time.perf_counter()
        compute_batch(bars, DEFAULT_SPEC, "1m")
        times.append(time.perf_counter() - t)
    lines.append(
        f"features batch default set   {BATCH_BARS:,} bars   best {min(times) * 1000:6.0f} ms   "
        f"median {sorted(times)[1] * 1000:6.0f} ms"
    )

    every = FeatureSpec.from_json(
        {
            "features": [
                {"indicator": "rsi", "lags": [1, 2], "transforms": ["diff"]},
                {"indicator": "macd"},
                {"indicator": "bbands", "outputs": ["upper", "middle", "lower", "percent_b", "width"]},
                {"indicator": "atr"},
                {"indicator": "adx", "outputs": ["adx", "plus_di", "minus_di"]},
                {"indicator": "sma"},
                {"indicator": "ema"},
                {"indicator": "stoch"},
                {"indicator": "obv"},
                {"indicator": "vwap"},
                {"indicator": "returns", "params": {"kind": "log"}},
                {"indicator": "volatility"},
                {"indicator": "zscore"},
                {"indicator": "cdl", "params": {"pattern": "engulfing"}},
                {"indicator": "rsi", "timeframe": "1h"},
            ]
        }
    )
    small = bars.iloc[: WARM_BARS + TIMED_UPDATES]
    for label, spec in (("default set", DEFAULT_SPEC), (f"all indicators ({len(every.columns())} cols)", every)):
        p50, p99, worst = _incremental(spec, small)
        lines.append(
            f"features update {label:<26} p50 {p50:6.1f} us   p99 {p99:6.1f} us   max {worst:7.1f} us "
            f"({TIMED_UPDATES:,} updates after {WARM_BARS:,} warm-up)"
        )
    return lines


def bench_features() -> None:
    for line in run():
        print(line)


if __name__ == "__main__":
    bench_features()
