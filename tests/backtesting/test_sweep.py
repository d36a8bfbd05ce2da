"""Sweeps: every valid combination tested on the in-sample bars and ranked; the best re-run on
the held-out bars; the deflated Sharpe tells luck from skill; bad grids rejected."""

import numpy as np
import pytest

from api.errors import ApplicationError
from backtesting.engine import BrokerConfig, run
from backtesting.stats import compute
from backtesting.strategies import strategy_get
from backtesting.sweep import deflated_sharpe, sweep
from marketdata.synthetic import generate_bars


@pytest.fixture(scope="module")
def bars():
    return generate_bars(3000, timeframe="1h", seed=17)


def test_a_sweep_ranks_every_valid_combination_and_checks_the_best_out_of_sample(bars):
    out = sweep(bars, strategy="sma_cross", grid={"fast": [5, 10, 20, 40], "slow": [20, 50]}, metric="return_pct")
    assert out["combinations"] == 8 and out["tested"] == 6  # fast must be below slow
    assert [x["params"] for x in out["skipped"]] == [{"fast": 20, "slow": 20}, {"fast": 40, "slow": 20}]
    values = [r["return_pct"] for r in out["ranking"]]
    assert values == sorted(values, reverse=True) and out["best"] == out["ranking"][0]
    # each ranked figure is the engine's own on the in-sample bars
    split = int(len(bars) * 0.7)
    s = strategy_get("sma_cross")
    target, start = s.run(bars.iloc[:split], out["best"]["params"])
    same = compute(
        run(bars.iloc[:split], target, BrokerConfig(), start=start), bars.iloc[:split], start=start, mc_runs=0
    )
    assert out["best"]["return_pct"] == pytest.approx(same["return_pct"])
    assert out["holdout"]["bars"] == len(bars) - split and "buy_and_hold_return_pct" in out["holdout"]
    heat = out["heatmap"]
    assert (
        heat["x_values"] == [5, 10, 20, 40]
        and heat["y_values"] == [20, 50]
        and heat["values"][3][0] is None is heat["values"][2][0]
    )
    assert "inflated by that selection" in out["warning"] and "held-out" in out["warning"]


def test_the_deflated_sharpe_discounts_the_best_of_many_lucky_trials():
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 0.01, size=(200, 500))  # 200 strategies without skill
    sharpes = noise.mean(axis=1) / noise.std(axis=1, ddof=1)
    best = noise[np.argmax(sharpes)]
    assert deflated_sharpe(best, sharpes) < 0.95  # the best of 200 is what luck gives: no evidence of skill
    skilled = rng.normal(0.004, 0.01, size=500)
    assert deflated_sharpe(skilled, sharpes) > 0.99


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"grid": {"speed": [1, 2]}}, "unknown_param"),
        ({"grid": {"fast": []}}, "invalid_grid"),
        ({"grid": {"fast": list(range(1, 50)), "slow": list(range(50, 100))}}, "invalid_grid"),
        ({"grid": {"fast": [5]}, "metric": "luck"}, "invalid_metric"),
        ({"grid": {"fast": [30], "slow": [20]}}, "invalid_grid"),
    ],
)
def test_bad_sweeps_say_what_is_wrong(bars, kwargs, code):
    with pytest.raises(ApplicationError) as e:
        sweep(bars, strategy="sma_cross", **kwargs)
    assert e.value.code == code


def test_an_optuna_search_stays_in_its_ranges_and_is_reproducible(bars):
    space = {"fast": [2, 30], "slow": [31, 150]}
    out = sweep(bars, strategy="sma_cross", grid=space, search="optuna", n_trials=25, metric="sharpe")
    assert out["search"] == "optuna" and out["combinations"] == 25 and 1 <= out["tested"] <= 25
    assert all(2 <= r["params"]["fast"] <= 30 and 31 <= r["params"]["slow"] <= 150 for r in out["ranking"])
    values = [r["sharpe"] for r in out["ranking"] if r["sharpe"] is not None]
    assert values == sorted(values, reverse=True) and "holdout" in out
    again = sweep(bars, strategy="sma_cross", grid=space, search="optuna", n_trials=25, metric="sharpe")
    assert again["best"]["params"] == out["best"]["params"]  # seeded
    with pytest.raises(ApplicationError) as e:
        sweep(bars, strategy="sma_cross", grid={"fast": [30, 2]}, search="optuna")
    assert e.value.code == "invalid_grid"
