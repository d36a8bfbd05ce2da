"""Labels: the definitions, the unknown tail, and that a label never uses prices after t + h."""

from __future__ import annotations

import numpy as np
import pytest

from api.errors import ApplicationError
from models_registry.ml.targets import TargetSpec, forward_returns, make_labels

CLOSE = np.array([100.0, 101.0, 101.0, 100.0, 100.1, 99.0, 102.0])


def test_direction_labels_ties_are_down_and_tail_is_unknown():
    y = make_labels(CLOSE, TargetSpec("direction", horizon=1))
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y[:-1], [1, 0, 0, 1, 0, 1])  # 101 -> 101 is a tie: 0
    assert np.isnan(y[-1])


def test_horizon_h_leaves_h_unknown_rows():
    y = make_labels(CLOSE, TargetSpec("direction", horizon=3))
    np.testing.assert_array_equal(y[:4], [0, 0, 0, 1])  # 100->100 tie, 101->100.1, 101->99, 100->102
    assert np.isnan(y[4:]).all()


def test_return_labels_are_forward_returns():
    y = make_labels(CLOSE, TargetSpec("return", horizon=2))
    np.testing.assert_allclose(y[:-2], CLOSE[2:] / CLOSE[:-2] - 1)
    assert np.isnan(y[-2:]).all()
    np.testing.assert_array_equal(np.isnan(forward_returns(CLOSE, 2)), np.isnan(y))


def test_ternary_pct_band():
    close = np.array([100.0, 100.1, 100.5, 100.0, 100.3])
    y = make_labels(close, TargetSpec("ternary", horizon=1, dead_band=0.002))
    # +0.1 % flat, +0.4 % up, -0.5 % down, +0.3 % up
    np.testing.assert_array_equal(y[:-1], [1, 2, 0, 2])


def test_ternary_atr_band_scales_with_atr():
    close = np.array([100.0, 100.5, 101.0, 101.5])
    atr = np.array([1.0, 0.1, np.nan, 1.0])
    y = make_labels(close, TargetSpec("ternary", dead_band=1.0, dead_band_unit="atr"), atr=atr)
    assert y[0] == 1  # +0.5 within 1 ATR (1 % of price)
    assert y[1] == 2  # +0.5 beyond 0.1 ATR
    assert np.isnan(y[2])  # ATR unknown: label unknown
    with pytest.raises(ApplicationError):
        make_labels(close, TargetSpec("ternary", dead_band=1.0, dead_band_unit="atr"))


@pytest.mark.parametrize("kind", ["direction", "ternary", "return"])
@pytest.mark.parametrize("h", [1, 5])
def test_label_at_t_ignores_prices_after_t_plus_h(kind, h):
    """The label is known at t + h: perturbing any close after t + h must not change label t."""
    rng = np.random.default_rng(3)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 200)))
    spec = TargetSpec(kind, horizon=h, dead_band=0.003 if kind == "ternary" else 0.0)
    base = make_labels(close, spec)
    for t in (0, 50, 120, 200 - h - 1):
        moved = close.copy()
        moved[t + h + 1 :] *= rng.uniform(0.5, 1.5, moved[t + h + 1 :].size)
        assert make_labels(moved, spec)[t] == base[t]
        changed = close.copy()
        changed[t + h] *= 1.5  # the price at t + h does matter
        assert make_labels(changed, spec)[t] != base[t] or kind != "return"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "price"},
        {"horizon": 0},
        {"horizon": 501},
        {"horizon": 1.5},
        {"dead_band": -0.1},
        {"kind": "ternary", "dead_band": 0.0},
        {"dead_band_unit": "bps"},
    ],
)
def test_validate_rejects(kwargs):
    with pytest.raises(ApplicationError) as exc:
        TargetSpec(**kwargs).validate()
    assert exc.value.code == "invalid_target"


def test_json_round_trip_and_task():
    spec = TargetSpec("ternary", horizon=4, dead_band=0.5, dead_band_unit="atr")
    assert TargetSpec.from_json(spec.to_json()) == spec
    assert spec.task == "multiclass" and TargetSpec().task == "binary" and TargetSpec("return").task == "regression"
    assert spec.classes == ["down", "flat", "up"]
    with pytest.raises(ApplicationError):
        TargetSpec.from_json({"kind": "direction", "lookahead": 3})
