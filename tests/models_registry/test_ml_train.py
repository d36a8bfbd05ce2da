"""train() for the other target kinds, its input checks and fingerprint; recommend()."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from api.errors import ApplicationError
from models_registry.ml.artifacts import dump, load
from models_registry.ml.targets import TargetSpec
from models_registry.ml.train import recommend, train


def _market(n=1500, seed=0):
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    r = np.r_[np.nan, close[1:] / close[:-1] - 1]
    index = pd.date_range("2020-01-01", periods=n, freq="1D", tz="UTC")
    X = pd.DataFrame({"ret": r, "ret_lag1": np.r_[np.nan, r[:-1]]}, index=index)
    atr = pd.Series(np.abs(np.r_[0, np.diff(close)])).rolling(14).mean().to_numpy()
    return X, close, atr


@pytest.mark.parametrize(
    "target",
    [TargetSpec("ternary", horizon=2, dead_band=0.3, dead_band_unit="atr"), TargetSpec("return", horizon=3)],
)
def test_train_other_targets_end_to_end(target):
    X, close, atr = _market()
    result = train(X, close, target, families=["xgboost", "logistic"], n_trials=3, atr=atr)
    json.dumps(result.report, allow_nan=False)
    warm_up = 13 if target.dead_band_unit == "atr" else 2  # the ATR's 13 NaN rows cover the 2 of the features
    assert result.rows_used == 1500 - warm_up - target.horizon
    assert result.train_start == X.index[warm_up] and result.train_end == X.index[-1 - target.horizon]
    x = X.to_numpy()[-1]
    again = load(dump(result.bundle))
    assert again.predict_one(x) == result.bundle.predict_one(x)
    if target.kind == "ternary":
        assert result.bundle.classes == ["down", "flat", "up"] and len(result.report["confusion"]["matrix"]) == 3
    else:
        assert "rmse" in result.report["oos"] and set(result.report["baselines"]) == {"zero_return", "persistence"}


def test_fingerprint_is_stable_and_data_sensitive():
    X, close, _ = _market(800)
    a = train(X, close, TargetSpec(), families=["logistic"], n_trials=1)
    b = train(X, close, TargetSpec(), families=["logistic"], n_trials=1)
    close2 = close.copy()
    close2[400] *= 1.01
    c = train(X, close2, TargetSpec(), families=["logistic"], n_trials=1)
    assert a.fingerprint == b.fingerprint != c.fingerprint and len(a.fingerprint) == 64


def test_too_few_rows_says_how_many_are_needed():
    X, close, _ = _market(120)
    with pytest.raises(ApplicationError) as exc:
        train(X, close, TargetSpec(), families=["logistic"], n_trials=1)
    assert exc.value.code == "not_enough_data" and exc.value.details["rows_needed"] == 150


def test_recommend_scales_with_data_and_remembers_no_edge():
    small = recommend(1_000, 5, "1d", [])
    assert small["families"] == ["logistic", "xgboost"] and small["n_trials"] < 30
    big = recommend(100_000, 20, "1h", [{"id": 1, "no_edge": True}, {"id": 2, "report": {"no_edge": False}}])
    assert set(big["families"]) == {"xgboost", "logistic", "random_forest", "extra_trees"}
    assert big["horizons"] == [1, 4, 24]
    assert [r["id"] for r in big["past_runs_without_edge"]] == [1]
    assert any("no edge" in n for n in big["notes"])
    assert recommend(100, 50, "1d", [])["horizons"] == []


def test_a_bar_appended_after_the_features_were_read_is_left_out(alpha, monkeypatch):
    """The live feed appends a bar between the read of the stored features and the read of the bars:
    training uses the bars that have features, closes and ATR aligned with them (it raised KeyError)."""
    from django_tenants.utils import schema_context

    from features import selectors as fs_selectors
    from marketdata.synthetic import generate_bars
    from models_registry.services import training
    from tests.riskcore.helpers import import_bars

    import_bars(alpha, "LATE", n=300, seed=4)
    real = fs_selectors.stored_features
    monkeypatch.setattr(fs_selectors, "stored_features", lambda **kw: real(**kw).iloc[:-1])
    with schema_context(alpha.tenant.schema_name):
        X, close, atr, _, _ = training.training_data({"symbol": "LATE", "timeframe": "1d", "feature_set": "default"})
    frame = generate_bars(300, seed=4, timeframe="1d")
    assert len(X) == len(close) == len(atr) == 299
    assert X.index[-1] == frame.index[-2] and close[-1] == pytest.approx(frame["close"].iloc[-2])
