"""AutoML figures: a 50-trial search on 50,000 rows x 20 features, and single-row latency of the
bundle it produces (no database).

Run alone with ``python -m benchmarks.automl``. Targets on the 2-core machine: the whole run
(search + final refit + report) within 3 minutes; ``predict_one`` p99 within 1 ms.

The data: a random walk whose next return repeats the sign of the current one with probability
0.53 (a weak, real edge); the features are the last 20 one-bar returns (random-walk increments).
"""

from __future__ import annotations

import gc
import os
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

ROWS = 50_000
FEATURES = 20
TRIALS = 50
EDGE = 0.03
TIMED_PREDICTIONS = 20_000


def _data(seed: int = 5):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = ROWS + FEATURES + 1
    r = 0.01 * rng.standard_normal(n)
    follow = rng.random(n) < 0.5 + EDGE
    for i in range(1, n):
        if (r[i] > 0) != (r[i - 1] > 0) and follow[i] or (r[i] > 0) == (r[i - 1] > 0) and not follow[i]:
            r[i] = -r[i]
    close = 100 * np.exp(np.cumsum(r))
    ret = np.r_[np.nan, close[1:] / close[:-1] - 1]
    cols = {f"ret_lag{k}": np.r_[np.full(k, np.nan), ret[: n - k]] for k in range(FEATURES)}
    index = pd.date_range("2015-01-01", periods=n, freq="1h", tz="UTC")
    return pd.DataFrame(cols, index=index), close


def run() -> list[str]:
    import django

    django.setup()
    import numpy as np

    from models_registry.ml.artifacts import dump, load
    from models_registry.ml.families import TABULAR
    from models_registry.ml.targets import TargetSpec
    from models_registry.ml.train import train

    X, close = _data()
    stamps = {}

    def progress(done, total, best, message):
        stamps.setdefault("first", time.perf_counter())
        if done >= total:
            stamps.setdefault("search_done", time.perf_counter())

    gc.collect()
    t0 = time.perf_counter()
    result = train(X, close, TargetSpec(), families=list(TABULAR), n_trials=TRIALS, progress=progress, seed=0)
    took = time.perf_counter() - t0
    search = stamps.get("search_done", t0 + took) - t0
    states = [t["state"] for t in result.trials]
    lines = [
        f"automl {TRIALS} trials x 5 folds  {ROWS:,} rows x {FEATURES} features   total {took:6.1f} s   "
        f"(search {search:5.1f} s; {states.count('COMPLETE')} complete, {states.count('PRUNED')} pruned)",
        f"automl result   best logloss {result.best_score:.4f}   OOS accuracy {result.report['oos']['accuracy']:.4f}   "
        f"members {[m['params']['family'] for m in result.members]}   no_edge {result.report['no_edge']}",
    ]
    bundle = load(dump(result.bundle))
    rows = np.ascontiguousarray(X.to_numpy()[-TIMED_PREDICTIONS - 1000 :])
    for x in rows[:1000]:
        bundle.predict_one(x)
    clock = time.perf_counter_ns
    lat = []
    for x in rows[1000:]:
        t = clock()
        bundle.predict_one(x)
        lat.append(clock() - t)
    lat.sort()
    p50, p99 = lat[len(lat) // 2] / 1000, lat[int(len(lat) * 0.99)] / 1000
    lines.append(
        f"automl predict_one   p50 {p50:6.1f} us   p99 {p99:6.1f} us   max {lat[-1] / 1000:7.1f} us "
        f"({TIMED_PREDICTIONS:,} rows, artifact {len(dump(result.bundle)) / 1e6:.2f} MB)"
    )
    return lines


def bench_automl() -> None:
    for line in run():
        print(line, flush=True)


if __name__ == "__main__":
    bench_automl()
