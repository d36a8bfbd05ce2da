"""Walk-forward: each segment is predicted by a model trained only on labels known before it
(purged by the horizon); predictions never change when later bars are cut off; on a market with
a planted edge the hit rate beats the base rate, on pure noise it does not and says so."""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from api.errors import ApplicationError
from backtesting.walkforward import WalkForward, hit_rate, walk_forward
from marketdata.synthetic import generate_bars
from models_registry.ml.targets import TargetSpec, make_labels


def _lagged_returns(bars: pd.DataFrame, lags=(1, 2, 3)) -> pd.DataFrame:
    r = np.log(bars["close"]).diff()
    return pd.DataFrame({f"r{k}": r.shift(k - 1) for k in lags}, index=bars.index)


WF = WalkForward(window=300, step=50)


def _run(bars, wf=WF, horizon=1):
    labels = make_labels(bars["close"].to_numpy(), TargetSpec(kind="direction", horizon=horizon))
    out = walk_forward(_lagged_returns(bars), labels=labels, horizon=horizon, task="binary",
                       build=lambda: make_pipeline(StandardScaler(), LogisticRegression()), wf=wf)  # fmt: skip
    return out, labels


def test_every_segment_trains_only_on_labels_known_before_it():
    bars = generate_bars(1200, timeframe="1h", seed=4)
    for horizon in (1, 5):
        out, _ = _run(bars, horizon=horizon)
        assert out["segments"]
        for seg in out["segments"]:
            # the last training row's label needs the close `horizon` bars later: before the segment
            assert seg["train_to"] + horizon < seg["predict_from"]
            assert seg["predict_from"] - seg["train_from"] <= 300 + horizon + 1
        assert np.isnan(out["score"][: out["segments"][0]["predict_from"]]).all()


def test_predictions_do_not_change_when_later_bars_are_cut_off():
    bars = generate_bars(1200, timeframe="1h", seed=4)
    full, _ = _run(bars)
    cut_at = full["segments"][3]["predict_to"] + 1  # a segment boundary: the same segments precede it
    cut, _ = _run(bars.iloc[:cut_at])
    both = ~np.isnan(cut["score"])
    assert both.sum() > 100
    np.testing.assert_allclose(cut["score"][both], full["score"][:cut_at][both])
    assert np.array_equal(cut["target"], full["target"][:cut_at])


def test_a_planted_edge_is_found_and_noise_is_called_noise():
    close_edge = generate_bars(4000, timeframe="1h", seed=9, planted_signal=0.15, planted_lag=2)
    edge, _ = _run(close_edge)
    rate = hit_rate(edge["score"], close_edge["close"].to_numpy(), horizon=1, task="binary")
    assert rate["edge"] and rate["hit_rate"] > rate["base_rate"] + 0.05
    noise_bars = generate_bars(4000, timeframe="1h", seed=9)
    noise, _ = _run(noise_bars)
    rate = hit_rate(noise["score"], noise_bars["close"].to_numpy(), horizon=1, task="binary")
    assert not rate["edge"] and abs(rate["hit_rate"] - 0.5) < 0.05


def test_bad_settings_and_too_little_data_are_refused():
    bars = generate_bars(300, timeframe="1h", seed=4)
    with pytest.raises(ApplicationError) as e:
        _run(bars, wf=WalkForward(window=300, step=50))
    assert e.value.code == "too_few_bars"
    with pytest.raises(ApplicationError) as e:
        _run(bars, wf=WalkForward(window=5, step=0, threshold=0.7))
    assert e.value.code == "invalid_walk_forward" and {"window", "step", "threshold"} <= set(e.value.details)
