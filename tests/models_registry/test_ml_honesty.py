"""End to end on the seeded synthetic market: with nothing to learn the pipeline must say so, and
with a planted edge of known size it must find (about) that edge and no more.

The generator makes sign(r[t+1]) == sign(r[t]) with probability exactly 0.5 + planted_signal,
independently of everything else, so for a 1-bar direction target with the current return as a
feature the Bayes accuracy is 0.5 + planted_signal (ties, a zero return, have probability 0 with
continuous shocks). The persistence baseline IS the Bayes rule here, so even a perfect model shows
no edge OVER persistence — also checked.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from marketdata.synthetic import generate_bars
from models_registry.ml.targets import TargetSpec
from models_registry.ml.train import train


def _features(close: np.ndarray, index) -> pd.DataFrame:
    r = np.r_[np.nan, close[1:] / close[:-1] - 1]
    return pd.DataFrame(
        {"ret": r, "ret_lag1": np.r_[np.nan, r[:-1]], "ret_lag2": np.r_[np.nan, np.nan, r[:-2]]}, index=index
    )


def _run(planted: float, seed: int, *, n: int = 4000, families=("xgboost", "logistic"), trials: int = 10, **kw):
    bars = generate_bars(n, timeframe="1d", seed=seed, planted_signal=planted)
    close = bars["close"].to_numpy()
    return train(_features(close, bars.index), close, TargetSpec(), families=list(families), n_trials=trials, **kw)


@pytest.mark.parametrize("seed", [11, 12])
def test_no_signal_means_coin_flip_and_no_edge(seed):
    result = _run(0.0, seed)
    report = result.report
    assert abs(report["oos"]["accuracy"] - 0.5) <= 0.03
    assert report["no_edge"] is True
    assert report["significance"]["p_value"] >= 0.05 or report["trading"]["total_return"] <= 0


def test_shuffled_labels_have_no_edge():
    """Real structure in the features, labels destroyed: a shuffled close series' returns."""
    bars = generate_bars(4000, timeframe="1d", seed=13, planted_signal=0.1)
    close = bars["close"].to_numpy()
    rng = np.random.default_rng(0)
    r = close[1:] / close[:-1]
    shuffled = np.r_[close[0], close[0] * np.cumprod(rng.permutation(r))]
    X = _features(close, bars.index)  # features from the real series, labels from the shuffled one
    result = train(X, shuffled, TargetSpec(), families=["xgboost", "logistic"], n_trials=8)
    assert abs(result.report["oos"]["accuracy"] - 0.5) <= 0.03
    assert result.report["no_edge"] is True


def test_planted_signal_is_found_to_within_3_points_of_bayes():
    result = _run(0.1, 7, n=5000, trials=12)
    report = result.report
    bayes = 0.6
    assert abs(report["oos"]["accuracy"] - bayes) <= 0.03
    # the persistence baseline is the Bayes rule on these rows: the model cannot beat it significantly
    assert abs(report["baselines"]["persistence"]["accuracy"] - bayes) <= 0.03
    assert report["no_edge"] is True
    assert report["importance"]["ranking"][0] == "ret"
    assert report["trading"]["total_return"] > 0  # the signal itself is real and tradeable
    assert result.rows_used == 5000 - 4  # three warm-up rows (ret_lag2), one unlabelled tail row


def test_report_covers_only_rows_after_the_blend_weights():
    result = _run(0.0, 3, n=2000, trials=4)
    ens = result.report["ensemble"]
    assert ens["report_rows"] == result.report["rows"]
    assert ens["weights_rows"] + ens["report_rows"] == ens["oos_rows"]
    assert pd.Timestamp(result.report["period"]["report_start"]) > result.train_start
