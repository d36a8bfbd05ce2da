"""The honest report: metric definitions, baselines without lookahead, the test, the trading
readout's arithmetic, JSON safety, and importance."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models_registry.ml.report import fold_baselines, honest_report, importance, trading_readout


def _proba(p_up):
    p_up = np.asarray(p_up, dtype=np.float64)
    return np.column_stack([1 - p_up, p_up])


def _assert_json_safe(report):
    json.dumps(report, allow_nan=False)


def test_trading_readout_arithmetic():
    pos = np.array([1.0, 1.0, -1.0, 0.0])
    fwd = np.array([0.01, -0.02, -0.01, 0.05])
    t = trading_readout(pos, fwd, horizon=1, fee_bps=10)
    # changes: 0->1 (1), 1->1 (0), 1->-1 (2), -1->0 (1): 4 units at 10 bps
    assert t["fees_paid"] == pytest.approx(0.004)
    net = np.array([0.01 - 0.001, -0.02, 0.01 - 0.002, 0 - 0.001])
    assert t["total_return"] == pytest.approx(np.prod(1 + net) - 1)
    assert t["trades"] == 3 and t["hit_rate"] == pytest.approx(2 / 3) and t["exposure"] == pytest.approx(0.75)


def test_trading_readout_is_non_overlapping_at_horizon():
    fwd = np.arange(10) / 100
    t = trading_readout(np.ones(10), fwd, horizon=3, fee_bps=0)
    assert t["periods"] == 4  # rows 0, 3, 6, 9
    assert t["gross_return"] == pytest.approx(np.prod(1 + fwd[[0, 3, 6, 9]]) - 1)


def test_perfect_classifier_has_an_edge():
    rng = np.random.default_rng(0)
    fwd = rng.normal(0, 0.01, 2000)
    y = (fwd > 0).astype(float)
    report = honest_report(
        y, _proba(np.where(y == 1, 0.9, 0.1)), task="binary", forward_returns=fwd, classes=["down", "up"]
    )
    _assert_json_safe(report)
    assert report["oos"]["accuracy"] == 1.0 and report["oos"]["roc_auc"] == 1.0
    assert report["significance"]["p_value"] < 1e-10
    assert report["no_edge"] is False
    assert report["confusion"]["matrix"] == [[int((y == 0).sum()), 0], [0, int((y == 1).sum())]]
    assert sum(b["count"] for b in report["calibration"]["bins"]) == 2000


def test_coin_flip_has_no_edge():
    rng = np.random.default_rng(1)
    fwd = rng.normal(0, 0.01, 3000)
    y = (fwd > 0).astype(float)
    report = honest_report(y, _proba(rng.uniform(0.3, 0.7, 3000)), task="binary", forward_returns=fwd, classes=None)
    _assert_json_safe(report)
    assert abs(report["oos"]["accuracy"] - 0.5) < 0.03
    assert report["no_edge"] is True
    assert report["baselines"]["random"]["log_loss"] == pytest.approx(np.log(2))


def test_persistence_baseline_uses_the_label_h_rows_back():
    y = np.array([1, 1, 0] * 200, dtype=float)  # at h=3 the label h rows back is always the same
    fwd = np.where(y == 1, 0.01, -0.01)
    report = honest_report(y, _proba(np.full(y.size, 0.6)), task="binary", forward_returns=fwd, horizon=3)
    assert report["baselines"]["persistence"]["accuracy"] == pytest.approx(1.0, abs=0.005)
    assert report["baselines"]["majority"]["accuracy"] == pytest.approx(2 / 3, abs=0.005)
    assert report["significance"]["against"] == "persistence"
    assert report["no_edge"] is True


def test_fold_baselines_come_from_preceding_training_rows_only():
    y = np.array([0.0] * 60 + [1.0] * 40)
    splits = [(np.arange(0, 58), np.arange(60, 80)), (np.arange(0, 78), np.arange(80, 100))]
    base = fold_baselines(y, splits, task="binary", horizon=2, n_classes=2)
    np.testing.assert_allclose(base["prior"][0], [1.0, 0.0])  # fold 1 trained on zeros only
    np.testing.assert_allclose(base["prior"][20], [60 / 78, 18 / 78])
    np.testing.assert_array_equal(base["persistence"], y[np.r_[58:78, 78:98]])


def test_ternary_report_and_flat_positions():
    rng = np.random.default_rng(2)
    fwd = rng.normal(0, 0.01, 900)
    y = np.digitize(fwd, [-0.005, 0.005]).astype(float)
    proba = np.tile([0.2, 0.6, 0.2], (900, 1))  # always "flat": never in the market
    report = honest_report(y, proba, task="multiclass", forward_returns=fwd, classes=["down", "flat", "up"])
    _assert_json_safe(report)
    assert report["trading"]["exposure"] == 0.0 and report["trading"]["total_return"] == 0.0
    assert report["no_edge"] is True
    assert report["calibration"]["kind"] == "top_label"
    assert len(report["confusion"]["matrix"]) == 3


def test_regression_report():
    rng = np.random.default_rng(3)
    y = rng.normal(0, 0.01, 1500)
    good = honest_report(y, y * 0.5, task="regression", forward_returns=y)
    _assert_json_safe(good)
    assert good["oos"]["directional_accuracy"] == 1.0 and good["no_edge"] is False
    noise = honest_report(y, rng.normal(0, 0.01, 1500), task="regression", forward_returns=y)
    assert noise["no_edge"] is True and noise["oos"]["r2"] < 0
    assert set(noise["baselines"]) == {"zero_return", "persistence"}


def test_single_class_period_gives_none_not_nan():
    y = np.ones(200)
    report = honest_report(y, _proba(np.full(200, 0.7)), task="binary", forward_returns=np.full(200, 0.01))
    _assert_json_safe(report)
    assert report["oos"]["roc_auc"] is None


def test_importance_finds_the_informative_feature():
    from models_registry.ml.families import FAMILIES

    rng = np.random.default_rng(4)
    X = rng.standard_normal((1500, 3))
    y = (X[:, 1] + 0.3 * rng.standard_normal(1500) > 0).astype(int)
    for family in ("xgboost", "logistic", "random_forest"):
        est = FAMILIES[family].build({}, "binary", 2).fit(X[:1000], y[:1000])
        imp = importance(est, X[1000:], y[1000:], ["a", "b", "c"], "binary")
        json.dumps(imp, allow_nan=False)
        assert imp["ranking"][0] == "b"
        assert int(np.argmax(imp["gain"])) == 1
